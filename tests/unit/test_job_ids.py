"""Job ids under both schemes (controller/jobs/rules.py) and the gate that chooses the scheme of
scheduled rounds (controller/jobs/scheme.py), as tables: what an agent of one country can and
cannot do with the ids it is sent."""

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from controller.jobs import rules, scheme
from controller.jobs.rules import JobIds

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")  # a NATS subject token, as the jobs' ids are used
T0 = datetime(2026, 11, 27, 13, 0, 0, 250_000, tzinfo=UTC)
KEY = b"k" * 32
KEYED = JobIds([KEY])
SEEDED = JobIds([KEY], lambda: T0 - timedelta(days=1))  # seeded from the day before
MID = "6f1d7a52-2f43-4c2b-9b7e-0c1b2f6f5b11"


def test_a_seeded_id_is_sha256_of_the_seed_and_the_ms_after_the_hour_as_a_version_8_uuid() -> None:
    seed = SEEDED.seed(MID, "DE", T0)
    ms = 250  # after the hour
    digest = bytearray(hashlib.sha256(seed + ms.to_bytes(4, "big")).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x80
    digest[8] = digest[8] & 0x0F | 0x80  # variant 10, the digit 8
    made = SEEDED.make(MID, "DE", T0)
    assert made == str(uuid.UUID(bytes=bytes(digest)))
    assert uuid.UUID(made).version == 8 and _TOKEN.fullmatch(made.replace("-", ""))
    assert uuid.UUID(KEYED.make(MID, "DE", T0)).version == 4


@pytest.mark.parametrize(
    ("at", "same_seed"),
    [
        (T0 + timedelta(minutes=59, seconds=59), True),  # the same UTC hour
        (T0.replace(minute=0, second=0, microsecond=0), True),
        (T0 + timedelta(hours=1), False),
        (T0 - timedelta(hours=1), False),
    ],
)
def test_a_seed_is_one_per_monitor_country_and_utc_hour(at: datetime, same_seed: bool) -> None:
    assert (SEEDED.seed(MID, "DE", at) == SEEDED.seed(MID, "DE", T0)) is same_seed
    assert SEEDED.seed(MID, "US", at) != SEEDED.seed(MID, "DE", T0)
    assert SEEDED.seed(str(uuid.uuid4()), "DE", at) != SEEDED.seed(MID, "DE", T0)
    assert JobIds([b"x" * 32]).seed(MID, "DE", at) != SEEDED.seed(MID, "DE", at)


def test_triggered_rounds_keep_keyed_ids_and_never_equal_a_scheduled_one() -> None:
    assert SEEDED.make(MID, "DE", T0, trigger=True) == KEYED.make(MID, "DE", T0, trigger=True)
    assert SEEDED.make(MID, "DE", T0, trigger=True) != SEEDED.make(MID, "DE", T0)
    assert SEEDED.make(MID, "DE", T0) != KEYED.make(MID, "DE", T0)


# (what an agent sends, for which round) -> whether the ingester accepts it
ROUND = (MID, "DE", T0)
CASES = [
    ("seeded id of its round", SEEDED.make(*ROUND), ROUND, True),
    ("keyed id of its round", KEYED.make(*ROUND), ROUND, True),
    ("triggered id of its round", KEYED.make(*ROUND, trigger=True), ROUND, True),
    ("seeded id, claimed for another country", SEEDED.make(*ROUND), (MID, "US", T0), False),
    (
        "seeded id, claimed 1 ms later",
        SEEDED.make(*ROUND),
        (MID, "DE", T0 + timedelta(0, 0, 0, 1)),
        False,
    ),
    (
        "seeded id, claimed for another monitor",
        SEEDED.make(*ROUND),
        (str(uuid.uuid4()), "DE", T0),
        False,
    ),
    ("another country's seeded id", SEEDED.make(MID, "US", T0), ROUND, False),
    (
        "seeded under another key",
        JobIds([b"x" * 32], lambda: T0 - timedelta(days=1)).make(*ROUND),
        ROUND,
        False,
    ),
    (
        "keyed id with its version made 8",
        KEYED.make(*ROUND)[:14] + "8" + KEYED.make(*ROUND)[15:],
        ROUND,
        False,
    ),
    (
        "seeded id with its version made 4",
        SEEDED.make(*ROUND)[:14] + "4" + SEEDED.make(*ROUND)[15:],
        ROUND,
        False,
    ),
    (
        "a random version 8 uuid",
        str(uuid.UUID(int=uuid.uuid4().int & ~(0xF << 76) | 8 << 76)),
        ROUND,
        False,
    ),
    ("empty", "", ROUND, False),
    # The id of the round an hour later under the seed of this hour: the next hour's seed differs.
    (
        "next hour's time, this hour's seed",
        rules.seeded_id(SEEDED.seed(*ROUND), T0 + timedelta(hours=1)),
        (MID, "DE", T0 + timedelta(hours=1)),
        False,
    ),
]


@pytest.mark.parametrize(("what", "job_id", "round_", "accepted"), CASES, ids=[c[0] for c in CASES])
def test_the_ingester_accepts_a_round_s_own_id_under_either_scheme_only(
    what: str, job_id: str, round_: tuple[str, str, datetime], accepted: bool
) -> None:
    assert KEYED.matches(job_id, *round_) is accepted
    assert SEEDED.matches(job_id, *round_) is accepted


def test_ids_of_an_older_key_match_after_a_rotation_under_both_schemes() -> None:
    rotated = JobIds([b"n" * 32, KEY], lambda: T0 - timedelta(days=1))
    for old in (SEEDED.make(*ROUND), KEYED.make(*ROUND), KEYED.make(*ROUND, trigger=True)):
        assert rotated.matches(old, *ROUND)
    assert rotated.make(*ROUND) != SEEDED.make(*ROUND)
    assert rotated.seed(*ROUND) != SEEDED.seed(*ROUND)


def test_an_agent_s_ids_of_an_hour_do_not_give_the_next_round_s_id() -> None:
    """Everything an agent of DE sees in an hour (every round's id, a round a second) says
    nothing it can use: none of them is another round's id, nor the seed, nor the next hour's
    or US's ids."""
    seen = {SEEDED.make(MID, "DE", T0 + timedelta(seconds=s)) for s in range(3600 - 250)}
    assert len(seen) == 3600 - 250
    others = [
        SEEDED.make(MID, "US", T0),
        SEEDED.make(MID, "DE", T0 + timedelta(hours=1)),
        str(uuid.UUID(bytes=SEEDED.seed(*ROUND))),
    ]
    assert not seen & set(others)


C = scheme.CONTROLLER_PREFIX
NEW_ALL = scheme.session_name(["alerter", "api", "ingester", "scheduler"])
NEW_INGESTER = scheme.session_name(["ingester"])


@pytest.mark.parametrize(
    ("others", "own", "all_accept"),
    [
        ([], NEW_ALL, True),  # alone
        ([NEW_INGESTER, NEW_ALL], NEW_ALL, True),
        ([NEW_INGESTER, "psql", "", "postgres_exporter"], NEW_ALL, True),  # not controllers
        ([f"{C} ingester"], NEW_ALL, False),  # an older ingester
        ([f"{C} alerter,api,ingester,scheduler"], NEW_ALL, False),
        ([NEW_INGESTER, f"{C} api"], NEW_ALL, False),  # an older API replica, too
        ([f"{C} ingester ids2x"], NEW_ALL, False),
        # the release before monitor_due: seeded ids, but it reads monitors.next_due_at
        ([f"{C} alerter,api,ingester,scheduler ids2"], NEW_ALL, False),
        ([], "ops-replica-7", False),  # the URL names the sessions: controllers unknown
        ([], f"{C} scheduler", False),
    ],
)
def test_seeded_ids_only_once_every_controller_session_accepts_them(
    others: list[str], own: str, all_accept: bool
) -> None:
    assert scheme.all_accept_seeded(others, own) is all_accept


def test_the_longest_session_name_is_not_cut_by_postgresql() -> None:
    assert len(NEW_ALL.encode()) <= 63 and NEW_ALL.endswith(scheme.SEEDED_MARK)


def test_a_controller_with_seeded_ids_off_names_its_sessions_without_the_mark() -> None:
    name = scheme.session_name(["ingester"], seeded=False)
    assert name == f"{C} ingester"
    assert scheme.all_accept_seeded([name], NEW_ALL) is False


SWITCH = datetime(2026, 11, 27, 14, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seeded_from", "scheduled_at", "seeded"),
    [
        (None, T0, False),  # never switched, or switched back: keyed
        (SWITCH, SWITCH - timedelta(milliseconds=1), False),  # before it: keyed
        (SWITCH, SWITCH, True),  # at it: seeded
        (SWITCH, SWITCH + timedelta(hours=3), True),
        (SWITCH, SWITCH - timedelta(hours=3), False),  # an old round closed or claimed late
        (SWITCH.astimezone(timezone(timedelta(hours=2))), SWITCH, True),  # any zone, one instant
    ],
)
def test_a_round_s_scheme_follows_its_scheduled_time_and_seeded_from(
    seeded_from: datetime | None, scheduled_at: datetime, seeded: bool
) -> None:
    assert scheme.seeded_round(seeded_from, scheduled_at) is seeded
    ids = JobIds([KEY], lambda: seeded_from)
    assert rules.is_seeded(ids.make(MID, "DE", scheduled_at)) is seeded
    assert not rules.is_seeded(ids.make(MID, "DE", scheduled_at, trigger=True))  # never


@pytest.mark.parametrize(
    ("looks", "moves"),
    [
        # (seconds, all accept) -> what each look asks of seeded_from
        ([(0, True), (299, True), (300, True), (301, True)], [None, None, "open", "open"]),
        (
            [(0, True), (200, False), (300, True), (599, True), (600, True)],
            [None, "close", None, None, "open"],
        ),
        ([(0, True), (300, True), (315, False), (330, True)], [None, "open", "close", None]),
    ],
)
def test_the_watch_asks_to_switch_after_five_minutes_of_all_accepting_and_back_at_once(
    looks: list[tuple[float, bool]], moves: list[scheme.Move]
) -> None:
    gate = scheme.SeededGate()
    assert [gate.look(all_accept, at) for at, all_accept in looks] == moves


def test_the_setting_off_always_asks_to_switch_back() -> None:
    gate = scheme.SeededGate(allowed=False)
    assert [gate.look(True, at) for at in (0, 300, 3600)] == ["close"] * 3


def test_a_failed_look_waits_five_more_minutes_and_keeps_the_value_read() -> None:
    gate = scheme.SeededGate()
    gate.seeded_from = SWITCH
    assert gate.look(True, 0) is None and gate.look(True, 300) == "open"
    gate.unseen()
    assert gate() == SWITCH  # every process keeps applying the same value
    assert gate.look(True, 310) is None and gate.look(True, 610) == "open"


@pytest.mark.parametrize("key", [b"a" * 16, b"k" * 32, bytes(range(64))])
@pytest.mark.parametrize("trigger", [False, True])
def test_keyed_ids_and_seeds_are_blake2b_macs_under_the_key_taken_literally(
    key: bytes, trigger: bool
) -> None:
    """The MACs are BLAKE2b with `key=` and 16 bytes of digest, whatever state is reused to make
    them: ids stored before, by another replica or by PostgreSQL's packs stay the same."""
    ids = JobIds([key])
    at = T0 + timedelta(milliseconds=1_234)
    ms = int((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    name = f"{MID}|DE|{ms}|{'t' if trigger else 's'}".encode()
    digest = bytearray(hashlib.blake2b(name, key=key, digest_size=16).digest())
    digest[6] = digest[6] & 0x0F | 0x40
    digest[8] = digest[8] & 0x3F | 0x80
    assert ids.make(MID, "DE", at, trigger, seeded=False) == str(uuid.UUID(bytes=bytes(digest)))
    hour_ms = int((T0.replace(minute=0, second=0, microsecond=0).timestamp()) * 1000)
    seed = hashlib.blake2b(f"{MID}|US|{hour_ms}|h".encode(), key=key, digest_size=16).digest()
    assert ids.seed(MID, "US", at) == seed
    # a state reused many times gives the same MAC each time
    assert ids.make(MID, "DE", at, trigger, seeded=False) == ids.make(MID, "DE", at, trigger, False)
