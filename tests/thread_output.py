"""A command's output captured in this process while servers of the same process log: only the
command's thread's writes are its (`contextlib.redirect_stdout` swaps the stream for every
thread)."""

import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import TextIO


class ThisThread(io.TextIOBase):
    """A stream writing one thread's text to `mine`, every other thread's to `other`."""

    def __init__(self, mine: TextIO, other: TextIO, thread: int) -> None:
        self._mine, self._other, self._thread = mine, other, thread

    def write(self, text: str) -> int:
        stream = self._mine if threading.get_ident() == self._thread else self._other
        return stream.write(text)

    def flush(self) -> None:
        self._mine.flush()
        self._other.flush()


@contextmanager
def captured(out: TextIO, err: TextIO) -> Iterator[None]:
    """This thread's stdout to `out` and stderr to `err` while it lasts; other threads' as
    before."""
    mine = threading.get_ident()
    with (
        redirect_stdout(ThisThread(out, sys.stdout, mine)),
        redirect_stderr(ThisThread(err, sys.stderr, mine)),
    ):
        yield
