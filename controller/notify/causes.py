"""Why a monitor is down (or why its round ran nowhere or was inconclusive), in words a person
acts on, from the agents' error kinds."""

from collections import Counter
from collections.abc import Sequence

from shared.strangers import kept

# error kind → (short label for SMS, sentence for e-mail and the API)
CAUSES: dict[str, tuple[str, str]] = {
    "auth": (
        "credentials rejected",
        "The server rejected the monitor's credentials: check the user name and password.",
    ),
    "basic_auth_disabled": (
        "password logins disabled",
        "The server takes no password for this account (basic authentication is disabled, as"
        " Microsoft 365 and Google Workspace do): switch the monitor's login to OAuth2 — set"
        " `oauth2` on its login (provider `microsoft` with your tenant, or `google`; a grant,"
        " client id and its secret or refresh token) instead of the password; see"
        " docs/oauth2.md. Logins are paused meanwhile so the account is not locked.",
    ),
    "tls": (
        "TLS broken",
        "TLS is broken: the handshake failed or the certificate is invalid or expired.",
    ),
    "tls_required": (
        "TLS not offered",
        "TLS is required, but the server did not offer it.",
    ),
    "temporary": (
        "server answering 4xx",
        "The server answers with a temporary error (4xx): it is reachable but refuses to work.",
    ),
    "refused": ("unreachable", "The server is unreachable: connections are refused."),
    "timeout": ("unreachable", "The server is unreachable: connections time out."),
    "dns": ("unreachable", "The server is unreachable: its name does not resolve (DNS)."),
    "protocol": (
        "protocol error",
        "The server's replies break the protocol (unexpected or malformed answers).",
    ),
    "blocked_target": (
        "target not allowed",
        "The agents refuse the target: it resolves to a private or loopback address.",
    ),
    # A round trip's own (issue 14); its SMTP and IMAP/POP failures say which leg.
    "not_delivered": (
        "mail not delivered",
        "Mail the agents submitted did not arrive in the mailbox within the check's timeout.",
    ),
    "spam": ("mail in spam", "Mail arrives, but in a spam folder."),
    "slow_delivery": ("mail slow", "Mail arrives, but more slowly than the monitor allows."),
    "late": ("mail late", "The mail this heartbeat monitor expects did not arrive in time."),
    "internal": ("probe error", "The check failed inside the agent, not at the server."),
    # A round that ran nowhere (`missed`): said in its event, never an incident's cause.
    "no_agent": ("no agent", "No live agent was there to run the check."),
    "no_seal_key": (
        "no sealing key",
        "The check was not sent: the controller has no sealing key for the country, and its "
        "credentials never go out unsealed.",
    ),
    "expired": (
        "check not run",
        "The check did not run in time: no agent finished it before the round closed.",
    ),
    "overdue": (
        "check not sent",
        "The round was over before the controller could send it (an outage of the controller, "
        "NATS or PostgreSQL).",
    ),
    "login_capped": (
        "login cap reached",
        "The check was not sent: the organization's logins to the account reached their cap "
        "(LOGIN_CAP_PER_ACCOUNT).",
    ),
    "oauth2_token": (
        "no OAuth2 token",
        "The check was not sent: the login's OAuth2 token endpoint gave no access token (its"
        " error is in the message; `invalid_grant`: the refresh token expired or was revoked)."
        " The mail server is not at fault.",
    ),
    "saturated": (
        "country saturated",
        "The check was not run: the country's agents were full until it could no longer start"
        " in time (the message says what the organization held beside its fair share).",
    ),
    "preempted": (
        "check preempted",
        "The check was cancelled before it ended: the organization held more than its fair share"
        " of the country's saturated slots while another organization's round waited (the"
        " message says after how long, and what the organization held beside its share).",
    ),
    "auth_backoff": (
        "logins paused",
        "The check did not log in: logins are paused after rejected credentials.",
    ),
    # An agent's own path explains its failure (issue 16): like missed, never an incident's.
    "inconclusive": (
        "agent path blocked",
        "Inconclusive: the agent's own network path failed its self-check (a canary of the port "
        "or its resolver), so its failure says nothing about the server.",
    ),
}
_UNKNOWN = ("failing", "The checks fail.")


def label(kind: str) -> str:
    return CAUSES.get(kind, _UNKNOWN)[0]


def describe(failures: Sequence[tuple[str, str | None, str]]) -> tuple[str, str]:
    """(kind, text) for a round's failures, given as (country, error kind, agent message): the
    most common kind (ties: the first country's), with the agents' own words for it."""
    kinds = Counter(kind or "internal" for _, kind, _ in failures)
    kind = max(kinds, key=lambda k: kinds[k]) if kinds else "internal"
    sentence = CAUSES.get(kind, _UNKNOWN)[1]
    # An agent's message holds a server's words: strangers' text, shown without the control
    # and format characters (an escape sequence, a bidirectional override) it may carry.
    seen = [f"{cc}: {msg}" for cc, k, msg in failures if (k or "internal") == kind and msg]
    if seen:
        sentence += " (" + "; ".join(kept(m, 200) for m in seen[:3]) + ")"
    countries = sorted(cc for cc, _, _ in failures)
    return kind, f"{sentence} Seen from {', '.join(countries)}."
