"""The process's one context on the system's CA store verifies names and chains, refuses
anything older than TLS 1.2 (report mailboxes rely on that floor), and is built once."""

import ssl

from shared.tls import system_trust


def test_the_system_context_verifies_and_refuses_tls_before_1_2() -> None:
    ctx = system_trust()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_the_system_context_is_built_once_per_process() -> None:
    assert system_trust() is system_trust()
