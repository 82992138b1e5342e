"""SPF syntax (RFC 7208), pure: which TXT records are SPF records and whether one parses, by
pyspf's own parser. The one place SPF syntax is judged: the mail DNS rules judge the domain's
record with it (`spf_invalid`), the agent's readiness walk each record of the include tree
below it (`spf_include_broken`)."""

from collections.abc import Sequence
from typing import Final

import spf

# The address parsed records are expanded for: TEST-NET-1 (RFC 5737), which no sender has.
NO_SENDER: Final = "192.0.2.0"


class Parser(spf.query):  # type: ignore[misc]
    """pyspf's query as a parser only: it never asks DNS itself (its lookups are synchronous,
    through the system's resolver, and would hold the event loop), so the `%{p}` macro, the
    one whose expansion looks names up, expands to "unknown" as RFC 7208 7.3 allows."""

    def __init__(self, **kw: str | bool) -> None:
        super().__init__(**kw)
        self.p = "unknown"

    def dns(self, name: str, qtype: str, *_: object, **__: object) -> list[object]:
        raise spf.TempError(f"not asked: the parser looks nothing up ({name} {qtype})")


def parser(domain: str) -> Parser:
    """A parser for the records read at `domain`."""
    return Parser(i=NO_SENDER, s=f"postmaster@{domain}", h=domain, strict=True)


def records(texts: Sequence[str]) -> list[str]:
    """The SPF records among a name's TXT records (RFC 7208 4.5: `v=spf1` alone or followed
    by a space, case-insensitive)."""
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def terms(record: str) -> list[str]:
    return [t for t in record.split(" ")[1:] if t]


def parse(query: Parser, said: Sequence[str]) -> None:
    """Raise spf.PermError for a syntax error anywhere in the terms `said`, terms after `all`
    included (RFC 7208 4.6: the record is parsed before it is evaluated), and for `redirect`
    or `exp` given twice (6), as pyspf's own evaluation parses it."""
    seen: set[str] = set()
    for term in said:
        modifier = spf.RE_MODIFIER.split(term)[1:]
        if len(modifier) != 2:
            query.validate_mechanism(term)
            continue
        name, arg = modifier[0].lower(), modifier[1]
        if name not in ("redirect", "exp"):
            query.expand(arg)  # an unknown modifier is ignored, but its macros must parse
            continue
        if name in seen:
            raise spf.PermError(f"{name}= MUST appear at most once", term)
        seen.add(name)
        if not arg or not query.expand_domain(arg):
            raise spf.PermError(f"{name}= has an empty domain", term)


def problem(domain: str, found: Sequence[str]) -> str | None:
    """Why the SPF records `found` at `domain` are not one record that parses, or None."""
    if len(found) > 1:
        return f"{len(found)} SPF records; receivers treat that as a permanent error"
    if not found:
        return None
    try:
        parse(parser(domain), terms(found[0]))
    except spf.PermError as exc:
        return str(exc)
    except spf.TempError:
        return None  # a macro needing DNS to expand: not a syntax error
    return None
