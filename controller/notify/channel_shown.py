"""What a notification channel's URL shows (the API, the console, `export`): the one rule.

A receiver's URL may carry its own credential: a `?token=`, a `user:password@`, a path such as
Discord's `/api/webhooks/{id}/{token}`. So a URL is shown whole only when it cannot hold one:
its kind's default (`channel_kinds.DEFAULT_URL`) or nothing after `scheme://host[:port]` (an
empty path or `/`, no query, no fragment, no user info). Any other is shown as
`scheme://host[:port]/` and the mask. Slack's and Teams' URLs (`channel_kinds.SECRET_URL`: the
URL is the credential) show `scheme://host/` and the mask whatever they hold; Apprise's show
only their scheme (`apprise_channel.shown`). A URL that does not parse as one with a plain
host shows only the mask.

What an endpoint answers may repeat its URL (a 404 page naming the path, a query value): a
message about a URL shown masked repeats none of its `secret_parts`.

The mask keeps the stored URL: a request that sends back what is shown changes nothing
(`channel_binding`). A shown URL shows itself, so an exported file applies as no change.
Pure: the standard library's URL parser only.
"""

import re
from typing import Final
from urllib.parse import unquote, urlsplit

from controller.notify.channel_kinds import DEFAULT_URL, SECRET_URL
from shared.secret import SECRET_MASK

# A host as the API stores one (controller.notify.endpoint_url): a DNS name in its ASCII form,
# an IPv4 address, or an IPv6 literal (without its brackets, as the parser gives it).
_HOST: Final = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+")


def shown_url(kind: str, url: str) -> str:
    """What is shown of the URL `url` of a channel of `kind` (not `apprise`)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return SECRET_MASK
    if kind in SECRET_URL:
        return f"{parts.scheme}://{host}/{SECRET_MASK}"
    if url == DEFAULT_URL.get(kind):
        return url
    if parts.scheme not in ("https", "http") or not _HOST.fullmatch(host):
        return SECRET_MASK
    bare = parts.path in ("", "/") and not (parts.query or parts.fragment)
    if bare and "@" not in parts.netloc:
        return url
    where = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{where}{'' if port is None else f':{port}'}/{SECRET_MASK}"


def secret_parts(url: str) -> list[str]:
    """The pieces of `url` a message must not repeat, longest first: the whole of it, all but
    its scheme, and every token of it (as written and percent-decoded) but the scheme and the
    host."""
    parts = urlsplit(url)
    hidden = [url, url.split("://", 1)[-1]]
    for sep in "/:@?&=#;,+":
        url = url.replace(sep, " ")
    keep = {parts.scheme.lower(), (parts.hostname or "").lower()}
    tokens = [t for t in url.split() if t.lower() not in keep]
    hidden += [piece for t in tokens for piece in {t, unquote(t)} if len(piece) >= 4]
    return sorted(set(hidden), key=len, reverse=True)
