"""The Exchange Online TLS 1.0/1.1 retirement rule as a table (controller/sidechecks/exchange_tls):
a round below TLS 1.2 with a server told to be Microsoft 365's (by its host name or the Microsoft
host its greeting names) raises `tls_legacy_exchange`, at TLS 1.2 or later clears it, and a
server nothing tells, or a round that reached no TLS, judges nothing. Which monitors it watches:
IMAP and POP3 ones, whatever their host."""

import base64

import pytest

from controller.posture.notices import title
from controller.sidechecks.exchange_tls import watched
from controller.sidechecks.exchange_tls.rules import legacy_exchange
from controller.sidechecks.findings import Finding
from shared.messages import ImapPopConfig, SmtpConfig
from shared.sidechecks.exchange_tls import ExchangeTls, bounded
from tests.unit.test_side_check_asks import monitor

EXO = base64.b64encode("AM0PR01CA0001.outlook.office365.com".encode("utf-16-le")).decode()
EXO_IMAP = f"* OK The Microsoft Exchange IMAP4 service is ready. [{EXO}]"
ONPREM_IMAP = "* OK The Microsoft Exchange IMAP4 service is ready."
DOVECOT = "* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready."
RAISED, CLEARED, NOTHING = "raised", "cleared", "nothing"


@pytest.mark.parametrize(
    ("version", "hostname", "banner", "verdict"),
    [
        ("TLSv1", "outlook.office365.com", None, RAISED),  # by name, implicit TLS: no greeting
        ("TLSv1.1", "outlook.office365.com", None, RAISED),
        ("TLSv1.1", "imap.contoso.test", EXO_IMAP, RAISED),  # by the greeting's host
        ("TLSv1", "OUTLOOK.OFFICE365.COM.", None, RAISED),
        ("TLSv1.2", "outlook.office365.com", None, CLEARED),
        ("TLSv1.3", "imap.contoso.test", EXO_IMAP, CLEARED),
        ("TLSv1", "imap.contoso.test", DOVECOT, CLEARED),  # another server: not Microsoft's
        ("TLSv1", "imap.contoso.test", ONPREM_IMAP, CLEARED),  # Exchange on premises
        ("TLSv1", "imap.contoso.test", None, NOTHING),  # nothing tells the server
        ("TLSv1", "outlook.office365.com.evil.test", None, NOTHING),
        (None, "outlook.office365.com", None, NOTHING),  # no TLS reached
    ],
)
def test_the_verdict(version: str | None, hostname: str, banner: str | None, verdict: str) -> None:
    seen = ExchangeTls(host="127.0.0.1", version=version, mode="starttls")
    v = legacy_exchange(seen, hostname, banner, "DE")
    if verdict == NOTHING:
        assert v == {}
    elif verdict == CLEARED:
        assert v == {("tls_legacy_exchange", "DE"): None}
    else:
        found = v[("tls_legacy_exchange", "DE")]
        assert isinstance(found, Finding)
        assert found.detail == f"{version} negotiated with 127.0.0.1 (starttls)"


@pytest.mark.parametrize(
    ("version", "banner", "names", "verdict"),
    [
        ("TLSv1", None, ["outlook.office365.com"], RAISED),  # implicit TLS: no greeting
        ("TLSv1.1", None, ["*.office365.com", "*.outlook.com"], RAISED),  # a wildcard
        ("TLSv1", DOVECOT, ["outlook.office365.com"], RAISED),  # a proxy's own greeting
        ("TLSv1.2", None, ["outlook.office365.com"], CLEARED),
        ("TLSv1", None, ["imap.contoso.test"], CLEARED),  # its own certificate: not Microsoft's
        ("TLSv1", None, ["outlook.office365.com.evil.test"], CLEARED),
        ("TLSv1", None, [], NOTHING),  # no certificate a trusted chain vouched for
    ],
)
def test_a_name_of_its_own_is_told_by_the_certificate_a_trusted_chain_vouches_for(
    version: str, banner: str | None, names: list[str], verdict: str
) -> None:
    seen = ExchangeTls(host="imap.contoso.test", version=version, mode="implicit", cert_names=names)
    v = legacy_exchange(seen, "imap.contoso.test", banner, "DE")
    if verdict == NOTHING:
        assert v == {}
    elif verdict == CLEARED:
        assert v == {("tls_legacy_exchange", "DE"): None}
    else:
        assert isinstance(v[("tls_legacy_exchange", "DE")], Finding)


def test_it_watches_imap_and_pop3_monitors_only() -> None:
    assert watched(monitor("imap", {"protocol": "imap"}))
    assert watched(monitor("pop3", {"protocol": "pop3"}))
    assert not watched(monitor("smtp"))
    assert isinstance(monitor("imap", {"protocol": "imap"}).config, ImapPopConfig)
    assert isinstance(monitor("smtp").config, SmtpConfig)


def test_a_strangers_facts_are_cut_to_their_bounds() -> None:
    long = ExchangeTls(host="h" * 400, version="v" * 40, mode="m" * 40, cert_names=["n" * 300] * 50)
    cut = bounded(long)
    assert (len(cut.host), len(cut.version or ""), len(cut.mode or "")) == (253, 16, 16)
    assert (len(cut.cert_names), len(cut.cert_names[0])) == (20, 253)
    same = ExchangeTls(host="outlook.office365.com", version="TLSv1.2", mode="implicit")
    assert bounded(same) is same


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("tls_legacy_exchange", "TLS legacy exchange"),
        ("tls_below_1_2", "TLS below 1.2"),
        ("tls_rpt_missing", "TLS-RPT missing"),
        ("tls_failures_reported", "TLS failures reported"),
    ],
)
def test_a_tls_finding_is_titled_as_people_write_it(code: str, said: str) -> None:
    assert title(code) == said
