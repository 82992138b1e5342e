"""Results that finish together as one RESULTS message (`RESULT_BUNDLES`): how the agent's
outbox groups them and how a bundle's subject is told from a result's."""

import msgspec
import pytest

from shared.messages import bundle_parts, result_parts
from shared.publishing import Outgoing, bundles
from shared.subjects import results_bundle_country, results_bundle_subject, results_subject

SUBJECT = results_bundle_subject("DE")


def _out(i: int, size: int = 10) -> Outgoing:
    """A message of `size` bytes (a JSON string)."""
    payload = msgspec.json.encode(f"{i}".ljust(size - 2, "x"))
    assert len(payload) == size
    return Outgoing(results_subject("DE", "smtp", f"m{i}"), payload, f"job-{i}")


@pytest.mark.parametrize(
    ("sizes", "max_bytes", "groups"),
    [
        ([30], 1000, [[0]]),
        ([30, 30, 30], 1000, [[0, 1, 2]]),
        # Each message with its comma or closing bracket, and the opening one: 1 + 31 + 31.
        ([30, 30, 30], 63, [[0, 1], [2]]),
        ([30, 30, 30], 62, [[0], [1], [2]]),
        ([30, 2000, 30, 30], 1000, [[0], [1], [2, 3]]),
        ([], 1000, []),
    ],
)
def test_messages_go_in_bundles_of_at_most_max_bytes(
    sizes: list[int], max_bytes: int, groups: list[list[int]]
) -> None:
    messages = [_out(i, size) for i, size in enumerate(sizes)]
    sent = bundles(messages, SUBJECT, max_bytes)
    assert [carried for _, carried in sent] == groups
    for out, carried in sent:
        if len(carried) == 1:  # alone: as it is, on its own subject and id
            assert out == messages[carried[0]]
            continue
        assert out.subject == SUBJECT and len(out.payload) <= max_bytes
        assert bundle_parts(out.payload) == [messages[i].payload for i in carried]


def test_a_bundles_id_names_exactly_its_messages() -> None:
    """The same messages again are a duplicate to the stream; a bundle that shares only its
    first message (or its size) with another is not, or the other's results would be lost."""
    a, b, c = (_out(i) for i in range(3))
    [(first, _)] = bundles([a, b], SUBJECT)
    [(again, _)] = bundles([a, b], SUBJECT)
    [(other, _)] = bundles([a, c], SUBJECT)
    [(longer, _)] = bundles([a, b, c], SUBJECT)
    assert first.msg_id == again.msg_id
    assert len({first.msg_id, other.msg_id, longer.msg_id}) == 3
    assert not {first.msg_id, other.msg_id} & {m.msg_id for m in (a, b, c)}


@pytest.mark.parametrize(
    ("subject", "country"),
    [
        ("mon.results.DE.bundle", "DE"),
        ("mon.results.DE.smtp.m1", None),
        ("mon.results.de.bundle", None),
        ("mon.results.DEU.bundle", None),
        ("mon.results.DE.bundle.x", None),
        ("mon.jobs.DE", None),
        ("live.results.DE.bundle", None),
    ],
)
def test_a_bundles_subject_names_its_country(subject: str, country: str | None) -> None:
    assert results_bundle_country(subject) == country


def test_a_bundle_subject_checks_its_country() -> None:
    with pytest.raises(ValueError):
        results_bundle_subject("de")
    assert results_bundle_country(results_bundle_subject("US")) == "US"


@pytest.mark.parametrize(
    ("subject", "data", "parts"),
    [
        ("mon.results.DE.smtp.m1", b'{"v":1}', [b'{"v":1}']),
        ("mon.results.DE.smtp.m1", b'[{"v":1}]', [b'[{"v":1}]']),  # a result's subject: as is
        ("mon.results.DE.bundle", b'[{"v":1}, {"v":2}]', [b'{"v":1}', b'{"v":2}']),
        ("mon.results.DE.bundle", b"[]", []),
        ("mon.results.DE.bundle", b'{"v":1}', None),  # a bundle is an array
        ("mon.results.DE.bundle", b"[{not json", None),
    ],
)
def test_what_a_results_message_carries(
    subject: str, data: bytes, parts: list[bytes] | None
) -> None:
    if parts is None:
        with pytest.raises(msgspec.DecodeError):
            result_parts(subject, data)
    else:
        assert result_parts(subject, data) == parts
