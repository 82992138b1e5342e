"""Key shares on OpenSSL 3.5 (issue 70, bench/results/ossl35.md): what a client pays for one
verified TLS handshake with OpenSSL 3.5's default key shares and with the image's
deploy/openssl-agent.cnf, against a server that prefers ML-KEM, one without it and one that
takes P-256 alone; the ClientHellos each handshake took (2: the server asked again, a
HelloRetryRequest and one more round trip) and the group the server settled on.

    python -m bench.tls_groups cpu [--handshakes N] [--rounds R]
        every client against every server, rounds interleaved; CPU ms per handshake of each
        client's process, the median of the rounds.
    python -m bench.tls_groups callgrind [--handshakes N]
        instructions per handshake (user space) of each pair: the client process runs under
        `valgrind --tool=callgrind`, warmed up, its handshakes between two dumps.

Needs a build of testkit/openssl.py (BENCH_OPENSSL=DIR, else `make bench-openssl`'s cache).
Servers: that build's `openssl s_server -rev` on loopback, holding a trustme ECDSA P-256
certificate; their groups:
- `ML-KEM first`: OpenSSL 3.5's default (X25519MLKEM768 preferred over any key share sent);
- `no ML-KEM`: `X25519:P-256:X448:P-384:P-521`, as this host's Debian 12 Postfix and Dovecot;
- `P-256 only`.
Clients, each a process of its own on the agent's verifying context (`build_ssl_contexts`, the
server's CA added): a TCP connect, the handshake, a line sent and its echo read (the server's
session tickets with it), close; no session is resumed.
- `3.0 default`: this host's OpenSSL, for reference;
- `3.5 default`: the build, its default configuration (key shares X25519MLKEM768 and X25519);
- `3.5 image`: the build with OPENSSL_CONF=deploy/openssl-agent.cnf (an X25519 share alone,
  X25519MLKEM768 still offered first; 3.5's own group order);
- `3.5 flat`: the build with the list agent-floor.md named (`*X25519:X25519MLKEM768:...`,
  X25519 offered first), in a temporary file.
"""

import argparse
import contextlib
import multiprocessing
import os
import re
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import trustme

from agent.probers.tls import build_ssl_contexts
from testkit import openssl
from testkit.common import loop_seconds, machine

NAME = "localhost"
LINE = b"mailprobe\n"
IMAGE_CONF = Path(__file__).resolve().parents[1] / "deploy" / "openssl-agent.cnf"
FLAT_GROUPS = "*X25519:X25519MLKEM768:secp256r1:X448:secp384r1:secp521r1:ffdhe2048:ffdhe3072"
SERVERS = {
    "ML-KEM first": [],
    "no ML-KEM": ["-groups", "X25519:P-256:X448:P-384:P-521"],
    "P-256 only": ["-groups", "P-256"],
}
CLIENTS = ("3.0 default", "3.5 default", "3.5 image", "3.5 flat")


def _flat_conf(directory: Path) -> Path:
    path = directory / "flat.cnf"
    path.write_text(
        "openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n"
        "[ssl_sect]\nsystem_default = system_default_sect\n"
        f"[system_default_sect]\nGroups = {FLAT_GROUPS}\n"
    )
    return path


def client_variables(client: str, where: Path, directory: Path) -> dict[str, str]:
    return {
        "3.0 default": {},
        "3.5 default": openssl.env(where),
        "3.5 image": openssl.env(where, IMAGE_CONF),
        "3.5 flat": openssl.env(where, _flat_conf(directory)),
    }[client]


# The server side.


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def said_since(self, offset: int) -> str:
        """What the server wrote to its log from `offset` on."""
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


@contextlib.contextmanager
def servers(where: Path, directory: Path, cert: trustme.LeafCert) -> Iterator[list[Server]]:
    """An `openssl s_server -rev` of the build per SERVERS entry, on its default configuration
    whatever this process was started with."""
    key_file, cert_file = directory / "key.pem", directory / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    variables = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    variables.update(openssl.env(where))
    started: list[Server] = []
    try:
        for name, groups in SERVERS.items():
            port = _free_port()
            log = directory / f"server-{port}.log"
            process = subprocess.Popen(
                [
                    *openssl.program(where),
                    "s_server",
                    "-rev",
                    "-accept",
                    f"127.0.0.1:{port}",
                    "-cert",
                    str(cert_file),
                    "-key",
                    str(key_file),
                    *groups,
                ],
                env=variables,
                stdin=subprocess.DEVNULL,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            started.append(Server(name, port, process, log))
        for server in started:
            _wait_port(server.port)
        yield started
    finally:
        for server in started:
            server.process.terminate()
            server.process.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def negotiated(said: str) -> str:
    """The group of the last handshake in an `s_server` log excerpt."""
    found = re.findall(r"^(?:Negotiated TLS1\.3 group|Peer Temp Key): (.+)$", said, re.M)
    if not found:
        return "?"
    kind, *rest = found[-1].split(", ")  # "X25519, 253 bits", "ECDH, prime256v1, 256 bits"
    return rest[0] if kind == "ECDH" and rest else kind


# The client side.


def handshake(ctx: ssl.SSLContext, port: int) -> None:
    raw = socket.create_connection(("127.0.0.1", port))
    with raw, ctx.wrap_socket(raw, server_hostname=NAME) as tls:
        tls.sendall(LINE)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = tls.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {reply!r}")
            reply += chunk


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def handshakes(ctx: ssl.SSLContext, port: int, n: int, count_hellos: bool) -> dict[str, Any]:
    """`n` handshakes: CPU seconds, ClientHellos written (when counted) and failures."""
    hellos = 0

    def on_message(*args: object) -> None:
        nonlocal hellos
        direction, msg_type = args[1], args[4]
        if direction == "write" and msg_type == ssl._TLSMessageType.CLIENT_HELLO:  # type: ignore[attr-defined]
            hellos += 1

    ctx._msg_callback = on_message if count_hellos else None  # type: ignore[attr-defined]
    failed: list[str] = []
    cpu0 = _cpu()
    for _ in range(n):
        try:
            handshake(ctx, port)
        except (OSError, ssl.SSLError) as exc:
            failed.append(repr(exc))
    return {"cpu": _cpu() - cpu0, "hellos": hellos, "failed": failed}


def _client_main(conn: Connection, ca_pem: str) -> None:
    conn.send(ssl.OPENSSL_VERSION)
    ctx = build_ssl_contexts(cadata=ca_pem).verified  # the agent's, built as it does
    while (request := conn.recv()) is not None:
        port, n, count_hellos = request
        conn.send(handshakes(ctx, port, n, count_hellos))


@dataclass
class Client:
    name: str
    openssl: str
    conn: Connection
    process: multiprocessing.process.BaseProcess
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def run(self, server: Server, n: int, count_hellos: bool = False) -> dict[str, Any]:
        self.conn.send((server.port, n, count_hellos))
        done: dict[str, Any] = self.conn.recv()
        if done["failed"]:
            raise SystemExit(f"{self.name} against {server.name}: {done['failed'][:2]}")
        return done


@contextlib.contextmanager
def clients(where: Path, directory: Path, ca_pem: str, names: list[str]) -> Iterator[list[Client]]:
    ctx = multiprocessing.get_context("spawn")
    started: list[Client] = []
    try:
        for name in names:
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_client_main, args=(child, ca_pem))
            with openssl.environment(client_variables(name, where, directory)):
                process.start()
            version: str = parent.recv()
            started.append(Client(name, version, parent, process))
            if name.startswith("3.5") == (version == ssl.OPENSSL_VERSION):
                raise SystemExit(f"{name}: runs on {version}")
        yield started
    finally:
        for client in started:
            with contextlib.suppress(OSError):
                client.conn.send(None)
            client.process.join(10)
            if client.process.is_alive():
                client.process.terminate()


def _located() -> Path:
    where = openssl.located()
    if where is None:
        raise SystemExit(
            f"tls_groups: no OpenSSL build: `make bench-openssl`, or {openssl.ENV_VAR}=DIR"
        )
    return where


def cpu(n: int, rounds: int, names: list[str]) -> None:
    where = _located()
    ca = trustme.CA()
    cert = ca.issue_cert(NAME, common_name=NAME)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, servers(where, Path(tmp), cert) as running:
        ca_pem = ca.cert_pem.bytes().decode()
        with clients(where, Path(tmp), ca_pem, names) as started:
            shapes: dict[tuple[str, str], tuple[float, str]] = {}
            for server in running:
                for client in started:
                    offset = server.log.stat().st_size
                    done = client.run(server, 4, count_hellos=True)
                    group = negotiated(server.said_since(offset))
                    shapes[client.name, server.name] = (done["hellos"] / 4, group)
                    client.run(server, 20)  # warm-up
                    client.cpu[server.name] = []
            for r in range(rounds):
                order = started if r % 2 == 0 else started[::-1]
                for server in running:
                    for client in order:
                        done = client.run(server, n)
                        client.cpu[server.name].append(done["cpu"] / n * 1000)
    load1 = os.getloadavg()
    print(
        f"tls_groups: CPU ms per verified handshake of the client's process, {n} x {rounds}"
        f" interleaved rounds, the median; against the build's s_server on loopback"
        f" ({machine()}; load average {load0[0]:.2f} before, {load1[0]:.2f} after; a Python"
        f" loop to 10 M in {loop_seconds():.2f} s)"
    )
    for client in started:
        print(f"  {client.name}: {client.openssl}")
    print("  | server       | client      | ClientHellos | group          | ms   | rounds |")
    for server in running:
        for client in started:
            hellos, group = shapes[client.name, server.name]
            figures = client.cpu[server.name]
            print(
                f"  | {server.name:<12} | {client.name:<11} | {hellos:12.1f} | {group:<14} |"
                f" {statistics.median(figures):.3f} | {' '.join(f'{f:.3f}' for f in figures)} |"
            )


# Instruction counts.

WARMUP = 10


def one(server_name: str, n: int) -> None:
    """Under `valgrind --tool=callgrind --dump-before=getppid`: this process's OpenSSL against
    one server, warmed up, then `n` handshakes between two dumps (the second part)."""
    where = _located()
    ca = trustme.CA()
    cert = ca.issue_cert(NAME, common_name=NAME)
    ctx = build_ssl_contexts(cadata=ca.cert_pem.bytes().decode()).verified
    with tempfile.TemporaryDirectory() as tmp, servers(where, Path(tmp), cert) as running:
        [server] = [s for s in running if s.name == server_name]
        offset = server.log.stat().st_size
        handshakes(ctx, server.port, WARMUP, False)
        os.getppid()
        done = handshakes(ctx, server.port, n, False)
        os.getppid()
        group = negotiated(server.said_since(offset))
    print(f"{ssl.OPENSSL_VERSION} {server_name} {group} failed {done['failed'][:1]}")


def callgrind(n: int, names: list[str]) -> None:
    where = _located()
    print(
        f"tls_groups: instructions per verified handshake of the client (callgrind, user space,"
        f" {n} handshakes after {WARMUP} of warm-up), against the build's s_server ({machine()})"
    )
    print("  | server       | client      | instructions |")
    with tempfile.TemporaryDirectory() as tmp:
        for server in SERVERS:
            for name in names:
                out = Path(tmp) / f"cg-{len(os.listdir(tmp))}.out"
                variables = {**os.environ, **client_variables(name, where, Path(tmp))}
                if not name.startswith("3.5"):
                    variables.pop("LD_LIBRARY_PATH", None)
                    variables.pop("OPENSSL_CONF", None)
                subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--dump-before=getppid",
                        f"--callgrind-out-file={out}",
                        sys.executable,
                        "-m",
                        "bench.tls_groups",
                        "one",
                        server,
                        "--handshakes",
                        str(n),
                    ],
                    env=variables,
                    check=True,
                    stderr=subprocess.DEVNULL,
                )
                total = _totals(Path(f"{out}.2"))
                print(f"  | {server:<12} | {name:<11} | {total / n / 1e6:10.3f} M |", flush=True)


def _totals(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"{dump}: no totals")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_groups")
    parser.add_argument("mode", choices=("cpu", "callgrind", "one"))
    parser.add_argument("server", nargs="?", choices=list(SERVERS), help="one's server")
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    args = parser.parse_args()
    names = args.clients.split(",")
    if args.mode == "cpu":
        cpu(args.handshakes, args.rounds, names)
    elif args.mode == "callgrind":
        callgrind(args.handshakes, names)
    else:
        one(args.server, args.handshakes)


if __name__ == "__main__":
    main()
