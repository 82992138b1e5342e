"""What `bench reports` runs in the parsing worker besides the parser: the parse, and the
worker's own peak resident memory (its process is not this one's child, so the bench cannot
read it from outside). Imports nothing more than the worker has."""

import resource
from datetime import UTC, datetime

from controller.reports.parse import Rejected, parse


def parse_peak(data: bytes) -> tuple[str, int, int]:
    """(the kind parsed or the reason refused, the rows, the worker's peak RSS in kB)."""
    said: str
    try:
        report = parse(data, datetime.now(UTC))
        said, rows = report.kind, len(report.rows)
    except Rejected as exc:
        said, rows = exc.reason, 0
    return said, rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
