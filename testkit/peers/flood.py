"""A peer on loopback that sends as fast as loopback takes it: for measuring how far a reader's
stream reads ahead of its reader."""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def flooding(mib: int) -> Iterator[int]:
    """A peer sending `mib` MiB to the first client to connect, from a thread; its port."""
    listening = socket.create_server(("127.0.0.1", 0))

    def flood() -> None:
        try:
            conn, _ = listening.accept()
        except OSError:  # closed before anyone connected
            return
        block = b"x" * (1 << 20)
        with conn:
            try:
                for _ in range(mib):
                    conn.sendall(block)
            except OSError:
                pass

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        yield listening.getsockname()[1]
    finally:
        listening.close()
        thread.join(10)
