"""What a report mailbox reader does with a message, from what earlier reads noted of it
(controller/reports/mailbox/message.py `step`), as a table."""

import pytest

from controller.reports.ledger_store import Noted
from controller.reports.mailbox.message import READS_MAX, step

TABLE = [
    ("never read", None, "read"),
    ("its reports taken, its move not seen done", Noted("taken", 1), "move"),
    ("refused mid-read (larger than declared)", Noted("refused", 1), "move"),
    ("one read begun, none finished (a stop mid-read)", Noted("reading", 1), "read"),
    ("every read allowed begun, none finished", Noted("reading", READS_MAX), "refuse"),
    ("more reads than that (an older version's)", Noted("reading", READS_MAX + 3), "refuse"),
]


@pytest.mark.parametrize(("what", "noted", "todo"), TABLE, ids=[t[0] for t in TABLE])
def test_a_message_is_read_moved_or_refused_by_what_was_noted(
    what: str, noted: Noted | None, todo: str
) -> None:
    assert step(noted) == todo, what
