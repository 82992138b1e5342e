"""pytest's processes without the garbage collector's passes over their imports: importing this
module first (tests/conftest.py does, before its other imports) stops the collector while the
conftests and test modules are imported; `resume` then freezes what they made out of its view
and starts it again (shared/startup.py says why), its youngest generation collected every
`YOUNG` allocations instead of 700: the tests make objects by the million, and most die young
without a pass (one file set: 26.1 CPU-s before, 23.5 after; bench/results/suite.md)."""

import gc

import pytest

YOUNG = 7000

gc.disable()


def resume() -> None:
    """Freeze what was imported and let the collector run again (once)."""
    if not gc.isenabled():
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG, older, oldest)
        gc.enable()


def collects(config: pytest.Config) -> bool:
    """Whether this process collects tests: not the dispatcher of xdist's workers."""
    return getattr(config.option, "dist", "no") == "no" or hasattr(config, "workerinput")
