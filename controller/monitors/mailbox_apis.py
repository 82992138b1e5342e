"""A round trip's legs, and an IMAP/POP3 monitor's mailbox check, over a mailbox API instead of
SMTP, IMAP or POP3 (`api`): which APIs there are, what login each takes, how a found message is
removed (`cleanup`), which host each is at by default and which agent features run it. Pure:
the write path (`write_values`) applies these rules to each leg, the planner asks `features`
of a job's config.

- "" (the default): the leg's protocol, with a password or an OAuth2 login;
- `graph`: Microsoft Graph, app-only: an OAuth2 `client_credentials` grant for
  `https://graph.microsoft.com/.default`, no password; `cleanup` `move` (the default) or
  `delete`; agent feature `graph`.
- `gmail`: the Gmail API: a user's `refresh_token` or a service account's `jwt_bearer` grant
  (domain-wide delegation, `subject` the mailbox) for
  `https://www.googleapis.com/auth/gmail.modify`, no password; `cleanup` `move` (the
  default: to the trash) only, as a delete needs full mail access; agent feature `gmail`.

A mailbox check over an API (an `imap-pop` monitor's `api`) logs in as the API's leg does, at
the monitor's `hostname` (by default the API's public host) and port (443), and needs the
agent feature `api-mailbox` besides the API's.
"""

from collections.abc import Sequence
from typing import Final, NamedTuple

from shared.messages import (
    FEATURE_API_MAILBOX,
    FEATURE_GMAIL,
    FEATURE_GRAPH,
    ImapPopConfig,
    JobConfig,
    RoundTripConfig,
)

GRAPH: Final = "graph"
GMAIL: Final = "gmail"
APIS: Final = ("", GRAPH, GMAIL)
CLEANUPS: Final = ("", "move", "delete")
GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
GMAIL_SCOPE: Final = "https://www.googleapis.com/auth/gmail.modify"
# A mailbox check only reads: Gmail's read-only scope (Graph's app permission is `Mail.Read`,
# its token's scope `.default` all the same).
GMAIL_READ_SCOPE: Final = "https://www.googleapis.com/auth/gmail.readonly"
# Per API: the grants it takes, the one scope its tokens are asked for, its agent feature.
_GRANTS: Final = {GRAPH: ("client_credentials",), GMAIL: ("refresh_token", "jwt_bearer")}
_SCOPES: Final = {GRAPH: [GRAPH_SCOPE], GMAIL: [GMAIL_SCOPE]}
_CHECK_SCOPES: Final = {GRAPH: [GRAPH_SCOPE], GMAIL: [GMAIL_READ_SCOPE]}
FEATURES: Final = {GRAPH: FEATURE_GRAPH, GMAIL: FEATURE_GMAIL}
# Every feature a job over an API may need (the planner asks which countries have each).
ALL_FEATURES: Final = (FEATURE_GRAPH, FEATURE_GMAIL, FEATURE_API_MAILBOX)
# Where each API answers when a mailbox check names no host.
HOSTS: Final = {GRAPH: "graph.microsoft.com", GMAIL: "gmail.googleapis.com"}


class LegProblem(ValueError):
    """A leg the API refuses: `field` is the key at fault, relative to the leg."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def api(value: str) -> str:
    """A leg's `api` as stored: "" (its protocol) or one of APIS, any case, blanks around
    ignored."""
    normal = value.strip().lower()
    if normal not in APIS:
        raise LegProblem("api", f"api must be {' or '.join(a for a in APIS if a)}, or empty")
    return normal


def scope(leg_api: str, check: bool = False) -> list[str]:
    """The scopes an API leg's (`check`: a mailbox check's) token is asked for (none for a leg
    of its protocol, or an API this controller does not know: `api` refuses it)."""
    return list((_CHECK_SCOPES if check else _SCOPES).get(leg_api.strip().lower(), []))


def grant_scopes(
    leg_api: str,
    grant: str | None,
    scopes: Sequence[str],
    has_password: bool,
    grant_key: str,
    check: bool = False,
) -> list[str] | None:
    """The scopes an API leg's OAuth2 grant is stored with (None for a leg of its protocol,
    whose grant is left as it is). An API leg logs in with its API's grant only: no password,
    a grant of the kinds the API takes, its scope alone. `grant_key`: where the leg holds its
    grant (`oauth2`, `auth.oauth2`)."""
    if not leg_api:
        return None
    label = _label(leg_api)
    if has_password:
        password = "auth.pass" if grant_key.startswith("auth.") else "password"
        raise LegProblem(password, f"a {label} leg logs in with OAuth2 only: no password")
    wanted = (_CHECK_SCOPES if check else _SCOPES)[leg_api]
    if grant is None:
        raise LegProblem(
            grant_key,
            f"a {label} leg needs an OAuth2 grant ({' or '.join(_GRANTS[leg_api])},"
            f" scope {' '.join(wanted)})",
        )
    if grant not in _GRANTS[leg_api]:
        raise LegProblem(
            f"{grant_key}.grant", f"a {label} leg takes the {' or '.join(_GRANTS[leg_api])} grant"
        )
    if scopes and list(scopes) != wanted:
        raise LegProblem(
            f"{grant_key}.scopes",
            f"a {label} leg's token is asked for {' '.join(wanted)} only (empty: that one)",
        )
    return list(wanted)


def receive_leg(leg_api: str, protocol: str, cleanup: str) -> str:
    """The mailbox leg's `cleanup` as stored: an API leg's "" (move), `move` or `delete`; a
    leg read over IMAP or POP3 takes none (it removes what it found as it always has), and an
    API leg reads the mailbox by its API, not by POP3."""
    if cleanup not in CLEANUPS:
        raise LegProblem("cleanup", f"cleanup must be {', '.join(c for c in CLEANUPS if c)}")
    if cleanup and not leg_api:
        raise LegProblem("cleanup", "cleanup is an API leg's (api graph) only")
    if leg_api == GMAIL and cleanup == "delete":
        raise LegProblem(
            "cleanup",
            "the Gmail API trashes the message it found (move): a delete needs full mail access",
        )
    if leg_api and protocol == "pop3":
        raise LegProblem("protocol", f"a {_label(leg_api)} leg reads the mailbox by its API")
    return cleanup


def features(config: JobConfig) -> list[str]:
    """The agent features a job needs beyond the protocols: a round trip's, one per API its
    legs use, each once; a mailbox check's over an API, its API's and `api-mailbox`."""
    if isinstance(config, RoundTripConfig):
        used = (config.send.api, config.receive.api)
        return list(dict.fromkeys(FEATURES[a] for a in used if a in FEATURES))
    if isinstance(config, ImapPopConfig) and config.api in FEATURES:
        return [FEATURES[config.api], FEATURE_API_MAILBOX]
    return []


class Charge(NamedTuple):
    """A mailbox a job's API calls go to: its API, `user@host` (lower case) and which part of
    the job calls it: `send` (a round trip's send leg), `read` (its mailbox leg), `check`
    (a mailbox check) or `look` (a side check's read of the same mailbox, which may spend
    `amount`)."""

    api: str
    mailbox: str
    part: str
    amount: int = 0


def charges(hostname: str, config: JobConfig) -> list[Charge]:
    """Each mailbox a job calls over an API, so its calls are reserved against each
    (controller.scheduling.api_calls_store): a round trip's sending mailbox (`auth.user`, else
    the envelope sender) at the monitor's host and its reading mailbox at the leg's; a mailbox
    check's at the monitor's. Legs over SMTP, IMAP or POP3 call none."""
    found: list[Charge] = []
    if isinstance(config, RoundTripConfig):
        send, receive = config.send, config.receive
        if send.api in (GRAPH, GMAIL):
            user = (send.auth.user if send.auth is not None else "") or send.sender
            found.append(Charge(send.api, f"{user}@{hostname}".lower(), "send"))
        if receive.api in (GRAPH, GMAIL):
            host = receive.hostname or hostname
            found.append(Charge(receive.api, f"{receive.user}@{host}".lower(), "read"))
    elif isinstance(config, ImapPopConfig) and config.api in (GRAPH, GMAIL):
        found.append(Charge(config.api, f"{config.user}@{hostname}".lower(), "check"))
    return found


def _label(leg_api: str) -> str:
    return {GRAPH: "Microsoft Graph", GMAIL: "Gmail API"}.get(leg_api, leg_api)
