"""DMARC records, pure: the one reading of a DMARC record every side check uses (mail DNS,
readiness, the Tree Walk, the agent's report destinations), so they agree on each fact.

| function | what it says | RFC 9989 |
| --- | --- | --- |
| `is_record` | whether a TXT record at a `_dmarc` name is a DMARC record | 4.7 (`v=DMARC1` first) |
| `tags` | its tags, each `;`-separated tag read alone, the first of a name kept | 4.7 |
| `applied` | the policy tags receivers apply by it (`p`, `sp`, `np`), or none | 4.10.1 |
| `faults` | each part receivers discard or read otherwise than written, and why | 4.7 |

`pct`, `rf` and `ri` are no tags of RFC 9989: readiness says they are obsolete
(`dmarc_obsolete_tags`), so they are no fault here.
"""

import re
from typing import Final

from shared.sidechecks.readiness import record_tags

# The policies a record may ask, weakest first (RFC 9989 4.7 `p`, `sp`, `np`).
POLICIES: Final = ("none", "quarantine", "reject")

# RFC 7489 6.4: dmarc-version = "v" *WSP "=" *WSP %x44.4d.41.52.43.31 (the "v" of any case,
# "DMARC1" exactly), then a ";" or the record's end.
_VERSION: Final = re.compile(r"^[vV][ \t]*=[ \t]*DMARC1[ \t]*(;|$)")

# Tags whose value is one of a few words (RFC 9989 4.7), by name.
_CHOICES: Final = {
    "p": POLICIES,
    "sp": POLICIES,
    "np": POLICIES,
    "adkim": ("r", "s"),
    "aspf": ("r", "s"),
    "t": ("y", "n"),
    "psd": ("y", "n", "u"),
}
_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_FO: Final = ("0", "1", "d", "s")


def is_record(text: str) -> bool:
    """Whether a TXT record at a `_dmarc` name is a DMARC record (all others there are not)."""
    return bool(_VERSION.match(text))


def tags(record: str) -> dict[str, str]:
    """A DMARC record's tags, by lower-case name, values stripped. Syntax errors past `v` are
    discarded or ignored, not the record, so each `;`-separated tag is parsed alone (the
    tag-value syntax of RFC 6376 3.2: `record_tags`); one that does not parse is left out, and a
    tag given twice keeps its first value."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        for name, value in record_tags(part).items():
            out.setdefault(name, value)
    return out


def applied(t: dict[str, str]) -> dict[str, str] | None:
    """The policy tags (`p`, `sp`, `np`) a record's tags are applied with (RFC 9989 4.10.1):
    its own when `p` is a policy and `sp` and `np` are policies or absent; else `p=none` alone
    when it asks for aggregate reports (`rua`); else None (no DMARC processing)."""
    said: dict[str, str] = {k: t[k].lower() for k in ("p", "sp", "np") if k in t}
    if said.get("p") in POLICIES and all(v in POLICIES for v in said.values()):
        return said
    return {"p": "none"} if t.get("rua") else None


def faults(record: str) -> list[str]:
    """What receivers discard of one DMARC record, or read otherwise than written, each in
    words ([] for none): a part that is no tag=value, no `p`, a value not among its tag's
    words, a report address that is no URI."""
    out: list[str] = []
    for part in record.split(";")[1:]:
        text = part.strip()
        if text and not record_tags(text):
            out.append(f"{text[:60]!r} is not a tag=value pair")
    t = tags(record)
    if "p" not in t:
        out.append("no p= tag (the policy)")
    for name, words in _CHOICES.items():
        if name in t and t[name].lower() not in words:
            out.append(f"{name}={t[name][:40]} is not {_either(words)}")
    for name in ("rua", "ruf"):
        for uri in filter(None, (u.strip() for u in t.get(name, "").split(","))):
            if not _URI.match(uri):
                out.append(f"{name}: {uri[:60]!r} is not a URI")
    if "fo" in t and not all(o.strip() in _FO for o in t["fo"].split(":")):
        out.append(f"fo={t['fo'][:40]} is not 0, 1, d or s, colon-separated")
    return out


def _either(words: tuple[str, ...]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1]
