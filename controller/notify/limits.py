"""A text cut to a service's documented limit on one of its fields, measured as that service
counts, on the text as it is sent: after escaping and word joiners, never before.

Lengths are UTF-16 code units (an astral character such as an emoji counts two): Telegram
counts so, and it is never fewer than the characters other services count, so a limit held in
UTF-16 holds however the service counts. A cut text ends in "…"; a cut never splits a
character, an HTML entity or escape (`&amp;`) or a tag.
"""

import html
import re
from collections.abc import Callable
from typing import Final

import msgspec

ELLIPSIS: Final = "…"
Width = Callable[[str], int]


def utf16(ch: str) -> int:
    """A character's length in UTF-16 code units."""
    return 2 if ord(ch) > 0xFFFF else 1


def units(text: str, width: Width = utf16) -> int:
    return sum(width(ch) for ch in text)


def cut(text: str, limit: int, width: Width = utf16) -> str:
    """`text` whole when it measures at most `limit`, else its longest head that fits with
    "…" after it."""
    if units(text, width) <= limit:
        return text
    room = limit - units(ELLIPSIS, width)
    n = 0
    for i, ch in enumerate(text):
        n += width(ch)
        if n > room:
            return text[:i] + ELLIPSIS
    return text + ELLIPSIS  # not reached: the whole text measured more than `limit`


def cut_escaped(text: str, limit: int) -> str:
    """`cut` of text whose every "&" opens an escape (`&amp;`, `&lt;`): an escape the cut
    would split is left out whole."""
    if units(text) <= limit:
        return text
    head = cut(text, limit)[: -len(ELLIPSIS)]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + ELLIPSIS


_SLACK_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def slack_width(ch: str) -> int:
    """A plain_text character as Slack may count it: "&", "<" and ">" as their escapes (the
    longer of the two readings, so the limit holds either way)."""
    return units(_SLACK_ESCAPES.get(ch, ch))


def json_bytes(ch: str) -> int:
    """A character's size in a JSON body (UTF-8; an escaped control character, `\\u0001`,
    six bytes)."""
    return len(msgspec.json.encode(ch)) - 2


_HTML_TOKEN: Final = re.compile(r"<[^<>]*>|&[#0-9A-Za-z]+;|.", re.DOTALL)


def html_units(text: str) -> int:
    """What Telegram measures of an HTML-mode message: its text after entity parsing (tags
    count nothing, an entity its character), in UTF-16 code units."""
    return units(html.unescape(re.sub(r"<[^<>]*>", "", text)))


def cut_html(text: str, limit: int) -> str:
    """`text` (HTML of tags and escaped text) cut to `limit` by `html_units`: never inside a
    tag or an entity, every tag opened before the cut closed after "…"."""
    if html_units(text) <= limit:
        return text
    room = limit - units(ELLIPSIS)
    out: list[str] = []
    opened: list[str] = []
    n = 0
    for m in _HTML_TOKEN.finditer(text):
        token = m.group()
        if token.startswith("<") and token.endswith(">") and len(token) > 1:
            if token.startswith("</"):
                if opened:
                    opened.pop()
            else:
                opened.append(token[1:-1].split()[0])
            out.append(token)
            continue
        n += units(html.unescape(token))
        if n > room:
            break
        out.append(token)
    return "".join(out) + ELLIPSIS + "".join(f"</{tag}>" for tag in reversed(opened))
