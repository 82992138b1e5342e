"""Anonymous attacks on the API's HTTP front, and what they cost the server process: blocking
clients on raw sockets (run them in threads next to the served process), each bounded in count
and time, and a watch that probes `/health` on fresh connections while it samples the server's
RSS and open fds from /proc.

Each client may take its own loopback source address (127.0.0.N), so a test tells one source
from many without any network of its own."""

import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testkit.common import cpu_s

KIB = 1 << 10
MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    """VmRSS of `pid` (/proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise LookupError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


LISTEN = "0A"  # a listening socket's state in /proc/net/tcp


def _sockets(port: int) -> list[tuple[str, int, int]]:
    """(state, send queue, receive queue) of each socket on local `port`, from /proc/net/tcp, or
    from tcp6 when tcp has none on it (a server's connections are in its listening socket's
    table; each read walks the kernel's whole table of connections, some 8 ms of CPU). A
    listening socket's receive queue holds the connections not accepted yet."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        found = []
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split(None, 5)
                if int(cols[1].rsplit(":", 1)[1], 16) == port:
                    tx, rx = cols[4].split(":")
                    found.append((cols[3], int(tx, 16), int(rx, 16)))
        if found:
            return found
    return []


def queued_bytes(port: int) -> int:
    """Bytes the kernel holds unsent on the connections of the server on `port`: memory an
    unread answer holds outside the process's RSS, charged to its cgroup all the same."""
    return sum(tx for state, tx, _ in _sockets(port) if state != LISTEN)


def accept_backlog(port: int) -> int:
    """Connections the kernel has made to the server on `port` that it has not accepted yet."""
    return sum(rx for state, _, rx in _sockets(port) if state == LISTEN)


def all_accepted(port: int, within_s: float = 30) -> float:
    """Wait until the server on `port` has accepted every connection made to it; the seconds
    that took (AssertionError past `within_s`)."""
    began = time.monotonic()
    while accept_backlog(port):
        assert time.monotonic() - began < within_s, (
            f"connections still unaccepted after {within_s} s"
        )
        time.sleep(0.01)
    return time.monotonic() - began


def connect(
    port: int, source: str = "127.0.0.1", *, rcvbuf: int = 0, timeout: float = 10
) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` from `source`; `rcvbuf`: a small receive buffer
    (set before connecting, so the window stays small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def answer_status(sock: socket.socket) -> int:
    """The status of the answer on `sock`, 0 when it closed (or timed out) without one."""
    got = b""
    try:
        while b"\r\n" not in got:
            more = sock.recv(4096)
            if not more:
                break
            got += more
    except OSError:
        return 0
    parts = got.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def get(port: int, path: str, source: str, ctx: ssl.SSLContext | None = None) -> int:
    """GET `path` on a fresh connection (closed after the answer): its status, 0 for none."""
    try:
        raw = connect(port, source, timeout=5)
        try:
            sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if ctx else raw
        except OSError:
            raw.close()
            raise
        with sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
            return answer_status(sock)
    except OSError:
        return 0


def run_delay_s(task: str) -> float:
    """Seconds the kernel kept a task (`/proc/<task>/schedstat`: "thread-self", or
    "PID/task/TID") runnable but waiting for a CPU; 0 when it is gone."""
    try:
        return int(Path(f"/proc/{task}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def server_clock(pid: int) -> Callable[[], float]:
    """A clock of `pid`'s time (seconds): the monotonic clock less the time the kernel has kept
    its main thread, the event loop, runnable but off a CPU. An attack paced by it comes at the
    same rate per second the server could work, however busy the machine: the arrivals of a
    second the server waited for a CPU are not all waiting for it when it runs again."""
    task = f"{pid}/task/{pid}"
    return lambda: time.monotonic() - run_delay_s(task)


def _quantile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))] if ranked else float("inf")


@dataclass
class Watch:
    """`/health` latencies (seconds; a failed probe is infinite) and the server's RSS and fds
    sampled while the watch runs."""

    pid: int
    port: int
    source: str = "127.0.0.250"
    every_s: float = 0.05
    ctx: ssl.SSLContext | None = None
    # Each probe's time less the time the kernel kept the probing thread or the server's event
    # loop runnable but off a CPU (schedstat's run delay): what the server's own work cost,
    # whatever else the machine runs. `raw` keeps the times as measured.
    health: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # RSS and the send queues of its connections
    queued: list[int] = field(default_factory=list)  # the send queues alone
    fds: list[int] = field(default_factory=list)
    cpu_s: float = 0.0  # the server's CPU seconds while the watch ran
    wall_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _probe(self) -> None:
        while not self._stop.is_set():
            waited = run_delay_s("thread-self") + run_delay_s(f"{self.pid}/task/{self.pid}")
            began = time.perf_counter()
            ok = get(self.port, "/health", self.source, self.ctx) == 200
            took = time.perf_counter() - began
            waited = (
                run_delay_s("thread-self") + run_delay_s(f"{self.pid}/task/{self.pid}") - waited
            )
            self.raw.append(took if ok else float("inf"))
            self.health.append(max(0.0, took - waited) if ok else float("inf"))
            self._stop.wait(self.every_s)

    def _sample(self) -> None:
        while not self._stop.is_set():
            queued = queued_bytes(self.port)
            self.queued.append(queued)
            self.rss.append(rss_bytes(self.pid) + queued)
            self.fds.append(open_fds(self.pid))
            self._stop.wait(0.1)

    @contextlib.contextmanager
    def running(self) -> Iterator["Watch"]:
        threads = [threading.Thread(target=f, daemon=True) for f in (self._probe, self._sample)]
        cpu, began = cpu_s(self.pid), time.monotonic()
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self._stop.set()
            for t in threads:
                t.join(10)
            self.cpu_s, self.wall_s = cpu_s(self.pid) - cpu, time.monotonic() - began

    def p(self, q: float) -> float:
        """The `q` quantile of the `/health` latencies."""
        return _quantile(self.health, q)

    def line(self, base_rss: int, base_fds: int) -> str:
        return (
            f"/health p50 {self.p(0.5) * 1000:.0f} ms p99 {self.p(0.99) * 1000:.0f} ms"
            f" max {max(self.health, default=0) * 1000:.0f} ms (as measured: p99"
            f" {_quantile(self.raw, 0.99) * 1000:.0f} ms; {len(self.health)} probes,"
            f" {sum(h == float('inf') for h in self.health)} failed);"
            f" RSS and send queues +{(max(self.rss, default=base_rss) - base_rss) / MIB:.0f} MiB"
            f" (queues at most {max(self.queued, default=0) / MIB:.0f} MiB);"
            f" fds +{max(self.fds, default=base_fds) - base_fds};"
            f" server CPU {self.cpu_s:.1f} s in {self.wall_s:.1f} s"
        )


def in_threads(work: Callable[[int], object], count: int) -> list[object]:
    """`work(i)` for i in range(count), each in a thread of its own; their results."""
    results: list[object] = [None] * count

    def run(i: int) -> None:
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def one_byte_chunks(port: int, source: str, seconds: float, rate: float, body: int) -> list[int]:
    """POST to a path no route takes, chunked in 1-byte chunks of `body` bytes, over and over
    for `seconds` at about `rate` wire bytes a second: the statuses answered (a body the
    attack's own end cuts short is left out: nothing the server did decided its answer)."""
    piece = b"1\r\na\r\n" * (64 * KIB // 6)
    pieces = max(1, body // (64 * KIB // 6))
    statuses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with connect(port, source) as sock:
                sock.sendall(
                    b"POST /no/such/path HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                for _ in range(pieces):
                    began = time.monotonic()
                    sock.sendall(piece)
                    time.sleep(max(0.0, len(piece) / rate - (time.monotonic() - began)))
                    if time.monotonic() >= end:
                        break
                else:
                    sock.sendall(b"0\r\n\r\n")
                    statuses.append(answer_status(sock))
        except OSError:
            statuses.append(0)  # refused mid-body: the server closed, the send failed
            time.sleep(0.05)
    return statuses


def half_body(port: int, source: str, path: str, declared: int) -> int:
    """POST `path` declaring a JSON body of `declared` bytes, send half of it, wait, and close
    (the rest never sent): the status answered before the close, 0 for none."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with connect(port, source) as sock:
        sock.sendall(head + b"{" + b" " * (declared // 2))
        sock.settimeout(0.5)
        return answer_status(sock)


def fetch(port: int, path: str, source: str = "127.0.0.1") -> bytes:
    """GET `path` on a fresh connection: the whole answer, head and body."""
    with connect(port, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while more := sock.recv(65536):
            got += more
        return got


def requests_from(
    port: int, source: str, path: str, seconds: float
) -> list[tuple[int, str | None]]:
    """GET `path` over and over on one kept-alive connection from `source` for `seconds`
    (a new connection when the server closes one): each answer's status and Retry-After."""
    answers: list[tuple[int, str | None]] = []
    end = time.monotonic() + seconds
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < end:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, 5, (source, 0))
            conn.request("GET", path)
            got = conn.getresponse()
            got.read()
            answers.append((got.status, got.getheader("retry-after")))
            if got.will_close:
                conn.close()
                conn = None
        except OSError:
            answers.append((0, None))
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return answers


def wide_head(fields: int) -> bytes:
    """A GET /health whose head carries `fields` header fields, sent in one piece."""
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(fields))
    return b"GET /health HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n"


def wide_heads(port: int, source: str, seconds: float, fields: int) -> list[int]:
    """`wide_head(fields)` in one piece on a fresh connection, over and over for `seconds`:
    the statuses answered."""
    head = wide_head(fields)
    statuses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with connect(port, source) as sock:
                sock.sendall(head)
                statuses.append(answer_status(sock))
        except OSError:
            statuses.append(0)
    return statuses


def unread_answers(
    port: int,
    sources: list[str],
    count: int,
    path: str,
    per_s: float,
    closing: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> list[socket.socket]:
    """`count` connections (spread over `sources`, `per_s` a second of `clock`) each asking for
    `path` and never reading the answer (a 4 KiB receive buffer); `closing`: asking the server
    to close once it has answered (`Connection: close`). The caller closes them."""
    close = "Connection: close\r\n" if closing else ""
    held = []
    began = clock()
    for i in range(count):
        while (ahead := began + i / per_s - clock()) > 0:
            time.sleep(ahead)
        try:
            sock = connect(port, sources[i % len(sources)], rcvbuf=4 * KIB, timeout=5)
        except OSError:
            continue
        with contextlib.suppress(OSError):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n{close}\r\n".encode())
        held.append(sock)
    return held


def silent(port: int, sources: list[str], count: int) -> list[socket.socket]:
    """`count` connections (spread over `sources`) that send nothing; the caller closes them."""
    held = []
    for i in range(count):
        with contextlib.suppress(OSError):
            held.append(connect(port, sources[i % len(sources)], timeout=5))
    return held


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes `sock` (reads and drops what it sends), None if it is
    still open after `seconds`."""
    began = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - began


def read_slowly(port: int, source: str, path: str, per_s: int, seconds: float) -> int:
    """GET `path` and read its answer at about `per_s` bytes a second (a 4 KiB receive buffer)
    for at most `seconds`: the bytes read before the server closed or the answer ended."""
    got = 0
    step = 4 * KIB
    with connect(port, source, rcvbuf=step, timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                more = sock.recv(step)
            except OSError:
                break
            if not more:
                break
            got += len(more)
            time.sleep(len(more) / per_s)
    return got
