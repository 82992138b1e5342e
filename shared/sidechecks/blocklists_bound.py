"""The size bound of a result's `reputation`, applied by the agent that asks the lists and again
by the controller at ingest (an agent could send more). Pure rules, no I/O.

A hostile or broken list can answer many A records, a TXT record of 64 KiB (over TCP) or a
name of any length; what travels is at most `A_MAX` records of an answer, `TXT_CHARS_MAX`
characters of its text, `ERROR_CHARS_MAX` of an error, `NAMES_MAX` names and `ANSWERS_MAX`
answers. Whatever is cut sets `truncated`, so the controller judges what is there.
"""

from typing import Final

import msgspec

from shared.sidechecks.blocklists import RESOLVERS, BlocklistAnswer, Reputation

A_MAX: Final = 8
TXT_CHARS_MAX: Final = 256
ERROR_CHARS_MAX: Final = 200
NAME_CHARS_MAX: Final = 253
NAMES_MAX: Final = 32
ANSWERS_MAX: Final = 512
ZONES_MAX: Final = 24
# The error of an answer never asked because the round's budget ran out first: the round's own
# `unknown`, no failure of the list.
BUDGET_SPENT: Final = "timed out (the round's budget was spent)"


def _answer(a: BlocklistAnswer) -> BlocklistAnswer:
    return msgspec.structs.replace(
        a,
        zone=a.zone[:NAME_CHARS_MAX],
        name=a.name[:NAME_CHARS_MAX],
        a=None if a.a is None else [r[:15] for r in a.a[:A_MAX]],
        txt=None if a.txt is None else a.txt[:TXT_CHARS_MAX],
        error=a.error[:ERROR_CHARS_MAX],
    )


def bounded(r: Reputation) -> Reputation:
    """`r` within the bound, `truncated` set when anything was cut (`r` itself when nothing
    was)."""
    names = {
        k[:NAME_CHARS_MAX]: v[: NAME_CHARS_MAX + 3] for k, v in list(r.names.items())[:NAMES_MAX]
    }
    answers = [_answer(a) for a in r.answers[:ANSWERS_MAX]]
    errors = {k[:32]: v[:ERROR_CHARS_MAX] for k, v in list(r.errors.items())[:4]}
    resolver = r.resolver if r.resolver in RESOLVERS else ""
    kept = names == r.names and answers == r.answers and errors == r.errors
    if kept and resolver == r.resolver:
        return r
    return Reputation(
        names=names,
        answers=answers,
        errors=errors,
        truncated=r.truncated or not kept,
        resolver=resolver,
    )
