"""What a check logs in with, and the OAuth2 SASL mechanisms the three probers share.

A job logs in with a password (`mechanism` "") or with an OAuth2 access token over XOAUTH2
(Google's and Microsoft's) or OAUTHBEARER (RFC 7628). Each prober speaks its protocol's framing
(SMTP AUTH, IMAP AUTHENTICATE, POP3 AUTH) through the mail client, whose `sasl` module builds
what goes inside and the dummy answer an error challenge wants; the refusal the server explains
in a challenge is worded here.

A token refused by the server comes back as a base64 JSON challenge (RFC 7628 3.2.2: `status`,
`scope`, `openid-configuration`; Google's XOAUTH2 says the same with an HTTP status), which the
client answers with a dummy response (XOAUTH2: an empty line; OAUTHBEARER: a single %x01), after
which the server sends its failure reply. The challenge's fields go into the result's message.

A password login refused because the server takes none for the account any more (Microsoft's
"basic authentication is disabled" after October 2022 for IMAP/POP, and SMTP AUTH from 2026)
is told apart from a wrong password by the server's own words, never by the bare failure:
Exchange Online answers a wrong password and a disabled basic auth alike with `NO LOGIN failed.`
/ `-ERR Logon failure` on some tenants, and those stay `auth`.
"""

import re
from dataclasses import dataclass
from typing import Final

from agent.probers.base import ProbeFailure
from shared.mailclient.sasl import describe_challenge, oauth2_dummy, oauth2_initial
from shared.messages import OAUTH2_MECHANISMS, PASSWORD_LOGIN, ImapPopConfig, SmtpConfig

# RFC 6750 2.1 b64token: what a bearer token may hold. Anything else (a space, a line break, a
# %x01) would end the SASL message or the command early, so it is refused before sending.
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# A reply that says the account takes no password login at all, whatever the password: Exchange
# Online's SMTP `535 5.7.139 Authentication unsuccessful, basic authentication is disabled.`
# and `550 5.7.30 Basic authentication is not supported for Client Submission.`, its IMAP/POP
# `NO Basic authentication is disabled.`; Google's `534-5.7.9 Application-specific password
# required` and IMAP `[ALERT] Application-specific password required` (an account with 2-step
# verification: an app password or OAuth2).
_BASIC_DISABLED: Final = re.compile(
    r"basic auth(entication)? (is )?(disabled|not supported)"
    r"|\b5\.7\.30\b"
    r"|application-specific password required",
    re.IGNORECASE,
)
SWITCH_TO_OAUTH2: Final = (
    "the server takes no password login for this account (basic authentication is disabled): "
    "switch the monitor to OAuth2 (mechanism XOAUTH2 or OAUTHBEARER with a token grant, see "
    "docs/oauth2.md)"
)


@dataclass(frozen=True, slots=True)
class Login:
    """A check's credentials: `mechanism` "" with `password`, else an OAuth2 mechanism with
    `token`. Never printed: its repr shows neither secret."""

    user: str
    password: str
    mechanism: str
    token: str

    @property
    def oauth2(self) -> bool:
        return self.mechanism != PASSWORD_LOGIN

    def __repr__(self) -> str:
        return f"Login(user={self.user!r}, mechanism={self.mechanism!r})"


def smtp_login(config: SmtpConfig) -> Login | None:
    auth = config.auth
    if auth is None:
        return None
    return _login(auth.user, auth.password.reveal(), auth.mechanism, auth.access_token.reveal())


def mailbox_login(config: ImapPopConfig) -> Login | None:
    return _login(
        config.user, config.password.reveal(), config.mechanism, config.access_token.reveal()
    )


def _login(user: str, password: str, mechanism: str, token: str) -> Login | None:
    """The login a config asks for; None when it asks for none (no password, no token). Raises
    ProbeFailure(`auth`) for one the agent cannot send: an unknown mechanism, an OAuth2 login
    without its user or token."""
    mechanism = mechanism.strip().upper()
    if mechanism == PASSWORD_LOGIN:
        return Login(user, password, mechanism, "") if user and password else None
    if mechanism not in OAUTH2_MECHANISMS:
        raise ProbeFailure(
            "auth",
            f"login mechanism {mechanism[:40]!r} is not one this agent knows "
            f"({', '.join(sorted(OAUTH2_MECHANISMS))} or a password); nothing was sent",
        )
    if not user or not token:
        missing = "a user" if not user else "an access token"
        raise ProbeFailure(
            "auth", f"an OAuth2 login ({mechanism}) needs {missing}; nothing was sent"
        )
    if "\x01" in user:
        raise ProbeFailure("auth", "the user name has a character SASL cannot carry; not sent")
    if not _B64TOKEN.fullmatch(token):
        raise ProbeFailure(
            "auth", "the access token is not a bearer token (RFC 6750 b64token); it was not sent"
        )
    return Login(user, "", mechanism, token)


def initial_response(login: Login) -> str:
    """The client's first SASL message, base64 (shared.mailclient.sasl)."""
    return oauth2_initial(login.mechanism, login.user, login.token)


def dummy_response(login: Login) -> str:
    """What answers the server's error challenge, base64 (shared.mailclient.sasl)."""
    return oauth2_dummy(login.mechanism)


def refusal(login: Login, reply: str, challenge: str | None) -> str:
    """The result's message for a login the server refused: its reply, and for OAuth2 what its
    error challenge said."""
    if not login.oauth2:
        return f"authentication failed: {reply}"
    said = describe_challenge(challenge) if challenge is not None else ""
    return f"OAuth2 login ({login.mechanism}) refused: {reply}" + (
        f" (the server said: {said})" if said else ""
    )


def basic_auth_disabled(login: Login, reply: str) -> ProbeFailure | None:
    """The failure for a password login the server refused because it takes no password
    logins for the account; None for any other refusal (and for an OAuth2 login)."""
    if login.oauth2 or not _BASIC_DISABLED.search(reply):
        return None
    return ProbeFailure("basic_auth_disabled", f"{SWITCH_TO_OAUTH2}: {reply}")


def offered(mechanism: str, mechanisms: set[str], where: str) -> None:
    """Refuse, before anything is sent, a mechanism the server did not advertise: a token goes
    only to a server that said it takes one."""
    if mechanism in mechanisms:
        return
    have = " ".join(sorted(mechanisms)) or "none"
    raise ProbeFailure(
        "auth",
        f"the server does not offer {mechanism} ({where}: {have}), so the access token was "
        "not sent",
    )
