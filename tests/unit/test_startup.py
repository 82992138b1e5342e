"""shared/startup.py: no collection while a process imports; what its start imported is frozen,
once."""

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

from shared import startup

ROOT = Path(__file__).resolve().parents[2]


def test_a_process_start_freezes_what_it_imported() -> None:
    code = textwrap.dedent(
        """
        import gc
        from shared import startup
        assert gc.get_freeze_count() == 0
        with startup.imports():
            assert not gc.isenabled()
            import json.decoder
            made = [[n] for n in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_a_process_that_froze_already_only_holds_the_collector() -> None:
    if not gc.get_freeze_count():
        gc.freeze()  # as this worker's start did (testkit/pytest_gc.py)
    frozen = gc.get_freeze_count()
    was = gc.isenabled()
    gc.enable()
    try:
        with startup.imports():
            assert not gc.isenabled()
            made = [[n] for n in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() == frozen, len(made)
        gc.disable()
        with startup.imports():
            pass
        assert not gc.isenabled()  # stopped before, stopped after
    finally:
        if was:
            gc.enable()
