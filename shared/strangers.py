"""Strangers' text as the controller keeps, shows and logs it: a reporter's name, a report id,
an MX, a mailed message's sender and subject, a refusal's detail, a mail server's words in an
agent's message as an incident's cause tells them. Pure.

White space runs become one space; control characters (a NUL, which PostgreSQL's text cannot
hold, an escape sequence a terminal would act on), format characters (bidirectional overrides
that reorder what a reader sees) and lone surrogates are dropped; what is left is cut at
`most` characters."""

import unicodedata

HIDDEN = frozenset({"Cc", "Cf", "Cs"})  # Unicode's control, format and surrogate categories


def kept(value: str, most: int) -> str:
    """`value` as it is kept: at most `most` characters, none of them hidden."""
    text = " ".join(value[: 4 * most + 64].split())
    if not text.isprintable():  # a quick test: most texts hold no hidden character
        text = " ".join("".join(c for c in text if unicodedata.category(c) not in HIDDEN).split())
    return text[:most]


def hidden(value: str) -> bool:
    """Whether `value` holds a character `kept` drops (white space aside)."""
    return any(unicodedata.category(c) in HIDDEN for c in value if not c.isspace())
