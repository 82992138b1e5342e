"""A channel's stored secret is bound to the URL it was given with: the one rule the API, the
console and `apply` (through the API) decide a channel change by.

The webhook's signing key, PagerDuty's routing key, Opsgenie's API key, Alertmanager's bearer
token and Telegram's bot token are sent to the channel's URL (in a header, the body, or the
path). A change of that URL, to anything but the very same text or the URL as the API shows
it (`channel_shown`: masked when it may hold a token; another host, port, scheme, path or
token alike: a path on the same host may be another service), must send the secret again in
the same request; the mask does not count as a secret. Telegram's `chatId` is not bound: the
token goes to the Bot API's URL whatever the chat, and a bot posts only to chats it was added
to.

Slack, Teams and Apprise channels have no separate secret: their URL is the credential, so a
new URL is a new credential and the mask (what the API shows) keeps the stored one.
"""

from typing import Final

from controller.notify import channel_kinds

# Kinds whose `secret` travels to their `url`.
BOUND: Final = frozenset(channel_kinds.KINDS) - channel_kinds.SECRET_URL


def moves_secret(
    kind: str,
    has_secret: bool,
    url_shown: str,
    url_stored: str | None,
    url: str | None,
    secret_sent: bool,
) -> bool:
    """Whether a change of a channel of `kind` (`has_secret`: one is stored; `url_shown`: its
    URL as the API shows it, `channel_shown`; `url_stored`: as stored, None when sealed) to
    `url` (None: not sent) would send the stored secret to another URL without the request
    sending a secret (`secret_sent`: neither absent nor the mask). The URL shown (masked or
    whole) and the stored URL itself keep it where it is."""
    changed = url is not None and url not in (url_shown, url_stored)
    return kind in BOUND and has_secret and changed and not secret_sent
