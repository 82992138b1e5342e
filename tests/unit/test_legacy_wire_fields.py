"""The legacy side fields (asks on `CheckJob` for agents that predate `sideChecks`, their answers
folded by the ingester, and their copies on the API's `CheckResultOut`) are deleted by
`LEGACY_FIELDS_END`: from the day after, this test fails while any of them is left."""

from datetime import UTC, date, datetime

import msgspec
import pytest

from controller.sidechecks import legacy
from controller.web.api.results import CheckResultOut
from shared.messages import LEGACY_FIELDS_END, SmtpCheckJob, _CheckJobBase

LEGACY: tuple[tuple[type[msgspec.Struct], tuple[str, ...]], ...] = (
    (_CheckJobBase, tuple(legacy.JOB_FIELDS)),
    (legacy.LegacyResult, tuple(legacy.FIELDS)),
    (CheckResultOut, ("mail_dns", "reverse_dns", "relay")),
)


def left(today: date) -> list[str]:
    """The legacy fields still there on `today`, once it is past LEGACY_FIELDS_END."""
    if today <= date.fromisoformat(LEGACY_FIELDS_END):
        return []
    return [
        f"{struct.__name__}.{name}"
        for struct, names in LEGACY
        for name in names
        if name in struct.__struct_fields__
    ]


def test_the_legacy_side_fields_are_deleted_by_their_end_date() -> None:
    assert left(datetime.now(UTC).date()) == [], f"delete them, due {LEGACY_FIELDS_END}"


@pytest.mark.parametrize(
    ("today", "fails"),
    [("2027-06-30", False), ("2027-07-01", True), ("2026-11-28", False)],
)
def test_the_date_check_fails_from_the_day_after_the_end(today: str, fails: bool) -> None:
    got = left(date.fromisoformat(today))
    assert bool(got) is fails
    if fails:  # every legacy field is named, so none is forgotten
        assert "_CheckJobBase.mail_domain" in got and "LegacyResult.reputation" in got
        assert len(got) == 3 + 4 + 3


def test_a_job_keeps_its_legacy_fields_only_for_a_country_with_an_older_agent() -> None:
    base = SmtpCheckJob(
        job_id="j",
        monitor_id="m",
        hostname="mx.example",
        port=25,
        timeout_seconds=10.0,
        country="DE",
        scheduled_at="2026-11-28T00:00:00.000Z",
        expires_at="2026-11-28T00:01:00.000Z",
        mail_domain="example.com",
        reverse_dns=True,
    )
    fr = msgspec.structs.replace(base, country="FR")
    kept, stripped = legacy.for_countries([base, fr], frozenset({"DE"}))
    assert kept is base
    assert (stripped.mail_domain, stripped.blocklists, stripped.reverse_dns) == (None, None, False)
    assert stripped.side_checks == fr.side_checks and stripped.country == "FR"
