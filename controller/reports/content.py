"""What makes two reports the same report: their content, never the id their sender chose.

A report's `digest` is a hash of its parsed content, normalized: kind, reporter, date range,
domains, and its rows summed per domain, result, MX and IP in a fixed order (so a retry,
repacked or reordered, is the same report). Its `report_id` is left out: anyone who knows a
reporting address can send a report under any id, and a forger's report claiming the id a
real reporter will use must not make the real one a duplicate. Pure."""

import hashlib

import msgspec

from controller.reports.parse import Report


def digest(report: Report) -> bytes:
    summed: dict[tuple[str, str, str, str], int] = {}
    for domain, row in report.rows:
        key = (domain, row.result, row.mx, row.ip)
        summed[key] = summed.get(key, 0) + row.count
    normal = [
        report.kind,
        report.reporter,
        report.begins_at.isoformat(),
        report.ends_at.isoformat(),
        sorted(report.domains),
        sorted((*key, n) for key, n in summed.items()),
    ]
    return hashlib.sha256(msgspec.json.encode(normal)).digest()
