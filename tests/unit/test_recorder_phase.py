"""Recorder.phase: the phase in progress is named on entry; a reported phase is timed only when
it ends without an error; every entry to `auth` counts as a login."""

import contextlib

import pytest

from agent.probers.base import PHASES, Recorder
from shared.clock import WALL


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    ("name", "fails", "timed", "logins"),
    [
        ("connect", False, True, 0),
        ("connect", True, False, 0),
        ("auth", False, True, 1),
        ("auth", True, False, 1),
        ("ehlo", False, False, 0),  # not a reported phase: named, never timed
        ("ehlo", True, False, 0),
    ],
)
def test_phase_names_times_on_success_and_counts_logins(
    name: str, fails: bool, timed: bool, logins: int
) -> None:
    rec = Recorder(clock=WALL)
    with pytest.raises(Boom) if fails else contextlib.nullcontext(), rec.phase(name):
        assert rec.current == name
        if fails:
            raise Boom
    assert rec.current == name  # what was in progress stays named for the failure's message
    assert (name in rec.phases) is timed
    assert rec.logins == logins
    if timed:
        assert name in PHASES and rec.phases[name] >= 0


def test_each_entry_to_auth_is_a_login() -> None:
    rec = Recorder(clock=WALL)
    for _ in range(3):
        with rec.phase("auth"):
            pass
    assert rec.logins == 3
