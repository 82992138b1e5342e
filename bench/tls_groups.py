"""Key shares on OpenSSL 3.5 (issue 70, bench/results/ossl35.md): what a client pays for one
verified TLS handshake with OpenSSL 3.5's default key shares and with one X25519 share,
against a server that prefers ML-KEM, one without it and one that takes P-256 alone; the
ClientHellos each handshake took (2: the server asked again, a HelloRetryRequest and one more
round trip) and the group the server settled on.

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
- `3.5 one share`: the build with an OPENSSL_CONF whose groups are 3.5's default with the key
  share on X25519 alone, X25519MLKEM768 still offered first (testkit.openssl.ONE_SHARE_GROUPS);
- `3.5 flat`: the same with the list agent-floor.md named (`*X25519:X25519MLKEM768:...`,
  X25519 offered first: testkit.openssl.FLAT_GROUPS).
"""

import argparse
import contextlib
import multiprocessing
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import trustme

from agent.probers.tls import build_ssl_contexts
from testkit import openssl
from testkit.common import loop_seconds, machine
from testkit.openssl import Handshakes, Server

SERVERS: dict[str, list[str]] = {
    "ML-KEM first": [],
    "no ML-KEM": ["-groups", "X25519:P-256:X448:P-384:P-521"],
    "P-256 only": ["-groups", "P-256"],
}
CLIENTS = ("3.0 default", "3.5 default", "3.5 one share", "3.5 flat")


def client_variables(client: str, where: Path, directory: Path) -> dict[str, str]:
    if client == "3.0 default":
        return {}
    groups = {"3.5 one share": openssl.ONE_SHARE_GROUPS, "3.5 flat": openssl.FLAT_GROUPS}
    if client not in groups:
        return openssl.env(where)
    conf = openssl.groups_conf(directory / f"{client.replace(' ', '-')}.cnf", groups[client])
    return openssl.env(where, conf)


@contextlib.contextmanager
def servers(where: Path, directory: Path, cert: trustme.LeafCert) -> Iterator[dict[str, Server]]:
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(openssl.s_server(where, directory, cert, args))
            for name, args in SERVERS.items()
        }


def _client_main(conn: Connection, ca_pem: str) -> None:
    conn.send(ssl.OPENSSL_VERSION)
    ctx = build_ssl_contexts(cadata=ca_pem).verified  # the agent's, built as it does
    while (request := conn.recv()) is not None:
        port, n, count_hellos = request
        conn.send(openssl.handshakes(ctx, port, n, count_hellos))


@dataclass
class Client:
    name: str
    openssl: str
    conn: Connection
    process: multiprocessing.process.BaseProcess
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def run(self, server: Server, n: int, count_hellos: bool = False) -> Handshakes:
        self.conn.send((server.port, n, count_hellos))
        done: Handshakes = self.conn.recv()
        if done.failed:
            raise SystemExit(f"{self.name} against port {server.port}: {done.failed[:2]}")
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
    cert = ca.issue_cert(openssl.NAME, common_name=openssl.NAME)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, servers(where, Path(tmp), cert) as running:
        ca_pem = ca.cert_pem.bytes().decode()
        with clients(where, Path(tmp), ca_pem, names) as started:
            shapes: dict[tuple[str, str], tuple[float, str]] = {}
            for server_name, server in running.items():
                for client in started:
                    offset = server.offset()
                    done = client.run(server, 4, count_hellos=True)
                    group = openssl.negotiated(server.said_since(offset))
                    shapes[client.name, server_name] = (done.client_hellos / 4, group)
                    client.run(server, 20)  # warm-up
                    client.cpu[server_name] = []
            for r in range(rounds):
                order = started if r % 2 == 0 else started[::-1]
                for server_name, server in running.items():
                    for client in order:
                        done = client.run(server, n)
                        client.cpu[server_name].append(done.cpu_s / n * 1000)
    load1 = os.getloadavg()
    print(
        f"tls_groups: CPU ms per verified handshake of the client's process, {n} x {rounds}"
        f" interleaved rounds, the median; against the build's s_server on loopback"
        f" ({machine()}; load average {load0[0]:.2f} before, {load1[0]:.2f} after; a Python"
        f" loop to 10 M in {loop_seconds():.2f} s)"
    )
    for client in started:
        print(f"  {client.name}: {client.openssl}")
    print("  | server       | client        | ClientHellos | group          | ms    | rounds |")
    for server_name in running:
        for client in started:
            hellos, group = shapes[client.name, server_name]
            figures = client.cpu[server_name]
            print(
                f"  | {server_name:<12} | {client.name:<13} | {hellos:12.1f} | {group:<14} |"
                f" {statistics.median(figures):.3f} | {' '.join(f'{f:.3f}' for f in figures)} |"
            )


# Instruction counts.

WARMUP = 10


def one(server_name: str, n: int) -> None:
    """Under `valgrind --tool=callgrind --dump-before=getppid`: this process's OpenSSL against
    one server, warmed up, then `n` handshakes between two dumps (the second part)."""
    where = _located()
    ca = trustme.CA()
    cert = ca.issue_cert(openssl.NAME, common_name=openssl.NAME)
    ctx = build_ssl_contexts(cadata=ca.cert_pem.bytes().decode()).verified
    with (
        tempfile.TemporaryDirectory() as tmp,
        openssl.s_server(where, Path(tmp), cert, SERVERS[server_name]) as server,
    ):
        offset = server.offset()
        openssl.handshakes(ctx, server.port, WARMUP, False)
        os.getppid()
        done = openssl.handshakes(ctx, server.port, n, False)
        os.getppid()
        group = openssl.negotiated(server.said_since(offset))
    print(f"{ssl.OPENSSL_VERSION} {server_name} {group} failed {done.failed[:1]}")


def callgrind(n: int, names: list[str]) -> None:
    where = _located()
    print(
        f"tls_groups: instructions per verified handshake of the client (callgrind, user space,"
        f" {n} handshakes after {WARMUP} of warm-up), against the build's s_server ({machine()})"
    )
    print("  | server       | client        | instructions |")
    with tempfile.TemporaryDirectory() as tmp:
        for server in SERVERS:
            for name in names:
                out = Path(tmp) / f"cg-{server}-{name}.out".replace(" ", "-")
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
                print(f"  | {server:<12} | {name:<13} | {total / n / 1e6:10.3f} M |", flush=True)


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
