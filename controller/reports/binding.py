"""A report mailbox's stored secret is bound to where it is sent, as a monitor's is
(controller.monitors.secret_binding): the server, port, user and private CA it was given with,
and for an OAuth2 grant also its token endpoint, client, scopes and subject. Sending the mask
keeps the stored secret only while none of those change; otherwise the secret must be sent
again, so nobody who may edit the mailbox but never saw its password can send it elsewhere.

The protocol (IMAP, POP3) and how TLS starts (implicit, STARTTLS) are not bound: every one of
them sends the secret only over TLS, after the server's certificate has been checked for the
same host against the same CA, so none can hand it to another server. A port that moves with
them (the default one) is a change of port, and needs the secret again. Pure."""

from collections.abc import Mapping

from controller.monitors.secret_binding import GRANT_BINDING

BOUND = ("host", "port", "user", "caPem")


def moved(before: Mapping[str, object], after: Mapping[str, object]) -> list[str]:
    """The fields (as the API spells them) whose change moves a kept secret: the mailbox's
    `BOUND`, and the grant's (`oauth2.<key>`) when both have one."""
    out = [name for name in BOUND if before.get(name) != after.get(name)]
    grant_before, grant_after = before.get("oauth2"), after.get("oauth2")
    if isinstance(grant_before, Mapping) and isinstance(grant_after, Mapping):
        for key, default in GRANT_BINDING.items():
            if grant_before.get(key, default) != grant_after.get(key, default):
                out.append(f"oauth2.{key}")
    return out
