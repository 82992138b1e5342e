"""A process's start without the garbage collector's passes over its imports.

Importing the controller makes about 300 collections that free next to nothing (modules,
classes and functions live as long as the process): a fifth of its start's CPU. While
`imports()` holds, the collector waits; after, what the imports made is moved out of its view
(`gc.freeze`), so no later full collection walks it again either. A process freezes once, at
its start: in one that froze already (a test worker calling a command's `main`), `imports()`
only holds the collector, as what is alive then is not all there for good.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports() -> Iterator[None]:
    """Import a process's modules inside this: no collection meanwhile, then they are frozen."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
        if was_enabled:
            gc.enable()
