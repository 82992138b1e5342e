"""Debian's Postfix as a private submission server on loopback ports (its lifecycle is
testkit/peers/postfix.py's): SMTP with STARTTLS and SMTPS, AUTH only after TLS, through
Dovecot's auth socket (`smtpd_sasl_type = dovecot`), so its XOAUTH2 and OAUTHBEARER are
Dovecot's OAuth2 passdb's. Nothing is relayed: the instance has no destination and no relay,
and delivers nothing but, with `mailboxes`, mail for example.com's users into Dovecot's homes.
"""

from pathlib import Path

import trustme

from testkit.peers.postfix import PostfixServer, missing

__all__ = ["MAILBOX_USERS", "Postfix", "missing"]

MAILBOX_USERS = ("alice", "bob")


class Postfix(PostfixServer):
    """`async with Postfix(ca, auth_socket) as pf:` listens on `pf.ports["smtp"]` (STARTTLS)
    and `pf.ports["smtps"]` (implicit TLS), authenticating through Dovecot at `auth_socket`; with
    `mailboxes` (Dovecot's homes) it delivers mail for example.com there, as `owner` (uid, gid),
    and relays nothing else."""

    def __init__(
        self,
        ca: trustme.CA,
        auth_socket: Path,
        mailboxes: Path | None = None,
        owner: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        self.ca = ca
        self.auth_socket = auth_socket
        self.mailboxes = mailboxes
        self.owner = owner

    def listeners(self) -> dict[str, str]:
        return {
            "smtp": "n - n - - smtpd",
            "smtps": (
                "n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt"
            ),
        }

    def main_cf(self) -> str:
        d = self.where
        return (
            super().main_cf()
            + f"""mynetworks = 127.0.0.1/32
smtpd_tls_cert_file = {d}/server.pem
smtpd_tls_key_file = {d}/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.auth_socket}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
"""
            + self._delivery()
        )

    def _delivery(self) -> str:
        """With `mailboxes`: mail for MAILBOX_USERS at example.com goes into
        `<mailboxes>/<user>/Maildir/` (Postfix's virtual delivery agent, as `owner`), where
        Dovecot reads it."""
        if self.mailboxes is None:
            return ""
        return f"""virtual_mailbox_domains = example.com
virtual_mailbox_base = {self.mailboxes}
virtual_mailbox_maps = texthash:{self.where}/etc/mailboxes
virtual_uid_maps = static:{self.owner[0]}
virtual_gid_maps = static:{self.owner[1]}
"""

    def prepare(self) -> None:
        d = self.where
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(d / "server.key"))
        (d / "server.key").chmod(0o600)
        with (d / "server.pem").open("wb") as f:
            for pem in cert.cert_chain_pems:
                f.write(pem.bytes())
        # The virtual delivery agent takes no substitution from a regexp table: one line a user.
        (d / "etc" / "mailboxes").write_text(
            "".join(f"{user}@example.com {user}/Maildir/\n" for user in MAILBOX_USERS)
        )
