"""The facts' hash the ingester sends with each result (`controller.ingest.store.facts_of`): two
results store the same facts exactly when their hashes match, so a routine one is stored compact
only when it says what the full row it points at says. And the batch that carries them: each
field where the statement reads it."""

import re
import uuid
from typing import Any

import msgspec
import pytest

from controller.ingest.store import (
    _FIELDS,
    _WIRE,
    CheckedResult,
    _encode_rows,
    decode_result,
    facts_of,
)
from controller.jobs.result_kinds import ResultRow
from shared.messages import AuthResults, Hop, Phases, TlsInfo, encode

MONITOR = uuid.UUID("0f5c7c1e-3b1a-4d84-9a0e-5e8f4b3c2d10")


def sent(**changes: Any) -> CheckedResult:
    fields: dict[str, Any] = {
        "jobId": str(uuid.uuid4()),
        "monitorId": str(MONITOR),
        "monitorType": "smtp",
        "country": "DE",
        "agentId": "agent-de-1",
        "scheduledAt": "2026-11-26T04:00:00Z",
        "startedAt": "2026-11-26T04:00:00.010Z",
        "finishedAt": "2026-11-26T04:00:00.040Z",
        "status": "up",
        "banner": "220 mx ESMTP",
        "responseTimeMs": 30.5,
        "phases": {"dnsMs": 1.0, "connectMs": 2.0},
        "tls": {"version": "TLSv1.3", "certSha256": "ab" * 32},
        "address": "192.0.2.1",
        "capabilities": ["PIPELINING", "SIZE 1000"],
    }
    fields.update(changes)
    return decode_result(msgspec.json.encode(fields))


BASE = facts_of(sent())


@pytest.mark.parametrize(
    "changes",
    [
        {"jobId": str(uuid.uuid4())},
        {"agentId": "agent-de-2"},
        {"scheduledAt": "2026-11-26T04:01:00Z", "startedAt": "2026-11-26T04:01:00.2Z",
         "finishedAt": "2026-11-26T04:01:00.9Z"},
        {"responseTimeMs": 912.0},
        {"phases": {"dnsMs": 9.0, "connectMs": 20.0, "greetingMs": 3.0}},
        {"logins": 1},
    ],
)  # fmt: skip
def test_what_every_check_measures_anew_is_not_a_fact(changes: dict[str, Any]) -> None:
    assert facts_of(sent(**changes)) == BASE


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "down", "errorKind": "timeout"},
        {"errorKind": "timeout"},
        {"message": "slow greeting"},
        {"banner": "220 mx ESMTP upgraded"},
        {"banner": None},
        {"tls": {"version": "TLSv1.2", "certSha256": "ab" * 32}},
        {"tls": {"version": "TLSv1.3", "certSha256": "cd" * 32}},
        {"tls": None},
        {"address": "192.0.2.2"},
        {"folder": "INBOX"},
        {"hops": [msgspec.to_builtins(Hop(by="mx.example"))]},
        {"authResults": msgspec.to_builtins(AuthResults(spf="pass"))},
        {"capabilities": ["PIPELINING"]},
        {"capabilities": ["SIZE 1000", "PIPELINING"]},
        {"capabilitiesBeforeTls": ["STARTTLS"]},
        {"monitorType": "imap"},
        {"monitorId": str(uuid.uuid4())},
    ],
)
def test_anything_a_full_row_shows_is_a_fact(changes: dict[str, Any]) -> None:
    assert facts_of(sent(**changes)) != BASE


def test_the_hash_is_the_wire_values_not_their_order_or_spacing() -> None:
    """An agent's JSON in another key order or spacing says the same: the same hash."""
    result = sent()
    keys = msgspec.json.decode(encode(result))
    again = decode_result(msgspec.json.format(msgspec.json.encode(dict(reversed(keys.items())))))
    spaced = decode_result(msgspec.json.format(encode(result), indent=2))
    assert facts_of(again) == facts_of(spaced) == facts_of(result)
    assert uuid.UUID(hex=facts_of(result)).hex == facts_of(result)


def test_a_row_the_controller_writes_has_facts_too() -> None:
    missed = ResultRow.missed(MONITOR, "smtp", "DE", str(uuid.uuid4()), sent().scheduled_at,
                              "no_agent", "no agent in DE")  # fmt: skip
    other = ResultRow.missed(MONITOR, "smtp", "DE", str(uuid.uuid4()), sent().scheduled_at,
                             "no_agent", "no agent in DE")  # fmt: skip
    assert facts_of(missed) == facts_of(other) != BASE
    assert len(facts_of(missed)) == 32


def test_typed_facts_hash_as_their_wire_form() -> None:
    """A result built in code (typed values) and one decoded from JSON agree."""
    typed = msgspec.structs.replace(
        sent(), tls=TlsInfo(version="TLSv1.3", cert_sha256="ab" * 32), phases=Phases()
    )
    assert facts_of(typed) == BASE


def _read(encoded: str) -> list[dict[str, Any]]:
    """The batch as the statement reads it: each element's hash, then each field at the position
    `_FIELDS` (the SQL) reads it from, a JSON null as None."""
    at = {name: int(n) for n, name in re.findall(r'e->>?(\d+)[^"]* AS "(\w+)"', _FIELDS)}
    assert set(at) == set(_WIRE)
    return [{"facts": row[0]} | {name: row[n] for name, n in at.items()}
            for row in msgspec.json.decode(encoded)]  # fmt: skip


def test_the_batch_carries_each_wire_field_where_the_statement_reads_it() -> None:
    """A decoded result and a row the controller writes travel in one layout: every field the
    statement reads is where `_FIELDS` reads it from, with its wire value."""
    result = sent(hops=[msgspec.to_builtins(Hop(by="mx.example"))], message="slow")
    missed = ResultRow.missed(MONITOR, "smtp", "US", str(uuid.uuid4()), result.scheduled_at,
                              "no_agent", "no agent in US")  # fmt: skip
    got_result, got_missed = _read(_encode_rows([result, missed]))
    wire = msgspec.json.decode(encode(result))
    assert got_result == {"facts": facts_of(result)} | {n: wire.get(n) for n in _WIRE}
    assert got_result["hops"] == [msgspec.to_builtins(Hop(by="mx.example"))]
    own = msgspec.json.decode(msgspec.json.encode(missed))
    assert got_missed == {"facts": facts_of(missed)} | {n: own.get(n) for n in _WIRE}
    assert got_missed["status"] == "missed" and got_missed["country"] == "US"
