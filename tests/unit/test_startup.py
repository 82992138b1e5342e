"""shared/startup.py: no collection while a process imports, then what it imported is frozen."""

import gc

from shared import startup


def test_the_collector_waits_inside_and_runs_after_with_the_imports_frozen() -> None:
    was = gc.isenabled()
    gc.enable()
    try:
        frozen = gc.get_freeze_count()
        with startup.imports():
            assert not gc.isenabled()
            made = [[n] for n in range(1000)]  # containers the collector would track
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(made)
    finally:
        if not was:
            gc.disable()


def test_a_collector_stopped_before_stays_stopped() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with startup.imports():
            pass
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
