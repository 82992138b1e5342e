"""What the ingester keeps of a result's `sideCheckErrors` (`_bound_side_errors`): a known side
check's name with a known kind and no facts beside it, each counted by side check and kind; the
rest dropped, the result kept."""

import uuid
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY

from controller.ingest.ingester import _bound_side_errors
from controller.ingest.store import decode_result

ROWS: list[tuple[dict[str, Any], dict[str, Any], dict[str, str]]] = [
    # (sideCheckErrors sent, sideChecks sent, kept)
    ({}, {}, {}),
    ({"mail_dns": "timeout"}, {}, {"mail_dns": "timeout"}),
    (
        {"reverse_dns": "internal", "blocklists": "malformed_ask"},
        {},
        {"reverse_dns": "internal", "blocklists": "malformed_ask"},
    ),
    ({"dkim": "timeout"}, {}, {}),  # a side check this controller does not know
    ({"mail_dns": "exploded"}, {}, {}),  # a kind it does not know
    ({"reverse_dns": "timeout"}, {"reverse_dns": {}}, {}),  # facts stand: no error beside them
    ({f"n{i}": "timeout" for i in range(500)} | {"relay": "timeout"}, {}, {"relay": "timeout"}),
]


@pytest.mark.parametrize(("errors", "side", "kept"), ROWS)
def test_side_check_errors_kept(
    errors: dict[str, Any], side: dict[str, Any], kept: dict[str, str]
) -> None:
    fields = {
        "jobId": str(uuid.uuid4()),
        "monitorId": str(uuid.uuid4()),
        "monitorType": "smtp",
        "country": "DE",
        "agentId": "agent-de-1",
        "scheduledAt": "2026-11-26T04:00:00Z",
        "startedAt": "2026-11-26T04:00:00.010Z",
        "finishedAt": "2026-11-26T04:00:00.040Z",
        "status": "up",
        "sideChecks": side,
        "sideCheckErrors": errors,
    }
    result = decode_result(msgspec.json.encode(fields))
    before = {
        (name, kind): REGISTRY.get_sample_value(
            "mailprobe_side_check_errors_total", {"side_check": name, "kind": kind}
        )
        or 0.0
        for name, kind in kept.items()
    }
    _bound_side_errors(result)
    assert result.side_check_errors == kept
    for (name, kind), was in before.items():
        now = REGISTRY.get_sample_value(
            "mailprobe_side_check_errors_total", {"side_check": name, "kind": kind}
        )
        assert now == was + 1
