"""CPU of one verified TLS handshake on the client's side (issue 70): Python's `ssl` (the system
OpenSSL) against pyOpenSSL (cryptography's bundled OpenSSL), when pyOpenSSL is installed.

`python -m bench.tls_handshake [--handshakes N] [--rounds R] [--key ecdsa|rsa] [--only ENGINE]`

A server in a child process (Python's `ssl` over the system OpenSSL, as Debian's Dovecot and
Postfix are) holds a trustme certificate issued by the CA the client trusts, of the key type
asked (ECDSA P-256 is the key of the exporter benchmark's peers), and sends a greeting line once
the handshake is done. Each client handshake is a fresh TCP connection, a full verification
(the system trust store plus that CA, the chain and the name `localhost`), the greeting read
(so the server's TLS 1.3 session tickets are read too, as a check reads them), then the socket
closed. No session is resumed. The engines' rounds are interleaved so that each meets the same
load; figures are this process's CPU time (user + system) per handshake, the median of the
rounds. `--only ENGINE` runs one engine, for `valgrind --tool=callgrind` (instruction counts
do not move with the machine's load: take the difference of two runs of N and N + 100).

Engines:
- stdlib: `SSLContext.wrap_socket`, blocking.
- stdlib-bio: `SSLObject` over `MemoryBIO`s, as uvloop and asyncio run TLS.
- pyopenssl: `SSL.Connection` on the socket, OpenSSL's own host name check.
- pyopenssl-bio: `SSL.Connection(ctx, None)` over memory BIOs, as an event loop would run it.

Before measuring, each engine must refuse the server's certificate for another name and under a
CA it does not trust: an engine that does not verify is not measured.

pyOpenSSL is not a dependency of the project: `pip install pyOpenSSL` in the virtualenv drives
the OpenSSL that the installed cryptography wheel bundles (4.0 with cryptography 50). Another
OpenSSL through the same path: `pip install --target DIR --no-deps cryptography==46.0.3
pyOpenSSL==25.3.0` (OpenSSL 3.5.4, the line of the shipped image's Debian 13) and
`PYTHONPATH=DIR:. python -m bench.tls_handshake`. Results: bench/results/agent-tls-cpu.md.
"""

import argparse
import contextlib
import importlib
import multiprocessing
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import trustme
from cryptography import x509

from testkit.common import loop_seconds, machine

GREETING = b"* OK ready\r\n"
NAME = "localhost"


def _serve(conn: Connection, cert_pem: bytes, key_pem: bytes) -> None:
    """Accept, handshake, greet, read until the client goes; one connection at a time."""
    import tempfile

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.NamedTemporaryFile() as cert, tempfile.NamedTemporaryFile() as key:
        cert.write(cert_pem)
        key.write(key_pem)
        cert.flush()
        key.flush()
        ctx.load_cert_chain(cert.name, key.name)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    conn.send(listener.getsockname()[1])
    while True:
        sock, _ = listener.accept()
        try:
            with ctx.wrap_socket(sock, server_side=True) as tls:
                tls.sendall(GREETING)
                while tls.recv(4096):
                    pass
        except (OSError, ssl.SSLError):
            pass


def _stdlib(ca_pem: str, port: int, name: str) -> Callable[[], None]:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.load_verify_locations(cadata=ca_pem)

    def once() -> None:
        with (
            socket.create_connection(("127.0.0.1", port)) as sock,
            ctx.wrap_socket(sock, server_hostname=name) as tls,
        ):
            assert tls.recv(100) == GREETING

    return once


def _stdlib_bio(ca_pem: str, port: int, name: str) -> Callable[[], None]:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.load_verify_locations(cadata=ca_pem)

    def once() -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        sock.sendall(outgoing.read())
                    incoming.write(sock.recv(65536))
            if outgoing.pending:
                sock.sendall(outgoing.read())
            while True:
                try:
                    assert obj.read(100) == GREETING
                    break
                except ssl.SSLWantReadError:
                    incoming.write(sock.recv(65536))

    return once


def _ssl() -> Any:
    """pyOpenSSL's SSL module (not a dependency of the project: `pip install pyOpenSSL`)."""
    return importlib.import_module("OpenSSL.SSL")


def _pyopenssl_context(ca_pem: str) -> Any:
    """Verifying as the agent's default context does: TLS 1.2 or later, the system trust store
    (pyOpenSSL finds the system's when cryptography's OpenSSL has none of its own) plus `ca_pem`."""
    SSL = _ssl()
    crypto = importlib.import_module("OpenSSL.crypto")
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_verify(SSL.VERIFY_PEER)
    ctx.set_default_verify_paths()
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    ctx.get_cert_store().add_cert(crypto.X509.from_cryptography(ca))
    return ctx


def _pyopenssl_connection(ctx: Any, sock: socket.socket | None, name: str) -> Any:
    """A client connection sending SNI and checking the name by OpenSSL's own host check (the
    verify parameter's host, as Python's `check_hostname` sets it)."""
    SSL = _ssl()
    lib = importlib.import_module("OpenSSL._util").lib
    tls = SSL.Connection(ctx, sock)
    tls.set_tlsext_host_name(name.encode())
    param = lib.SSL_get0_param(tls._ssl)
    if lib.X509_VERIFY_PARAM_set1_host(param, name.encode(), len(name)) != 1:
        raise RuntimeError("X509_VERIFY_PARAM_set1_host failed")
    tls.set_connect_state()
    return tls


def _pyopenssl(ca_pem: str, port: int, name: str) -> Callable[[], None]:
    ctx = _pyopenssl_context(ca_pem)

    def once() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            tls = _pyopenssl_connection(ctx, sock, name)
            tls.do_handshake()
            assert tls.recv(100) == GREETING

    return once


def _pyopenssl_bio(ca_pem: str, port: int, name: str) -> Callable[[], None]:
    SSL = _ssl()
    ctx = _pyopenssl_context(ca_pem)

    def flush(tls: Any, sock: socket.socket) -> None:
        with contextlib.suppress(SSL.WantReadError):  # nothing to send
            sock.sendall(tls.bio_read(65536))

    def once() -> None:
        tls = _pyopenssl_connection(ctx, None, name)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            while True:
                try:
                    tls.do_handshake()
                    break
                except SSL.WantReadError:
                    flush(tls, sock)
                    tls.bio_write(sock.recv(65536))
            flush(tls, sock)
            while True:
                try:
                    assert tls.recv(100) == GREETING
                    break
                except SSL.WantReadError:
                    tls.bio_write(sock.recv(65536))

    return once


ENGINES: dict[str, Callable[[str, int, str], Callable[[], None]]] = {
    "stdlib": _stdlib,
    "stdlib-bio": _stdlib_bio,
    "pyopenssl": _pyopenssl,
    "pyopenssl-bio": _pyopenssl_bio,
}


def _refuses(engine: str, once: Callable[[], None], what: str) -> None:
    """`once` must fail its certificate's verification (a chain or a name it must refuse)."""
    try:
        once()
    except ssl.SSLCertVerificationError:
        return
    except Exception as exc:
        if "certificate verify failed" in str(exc):  # pyOpenSSL's SSL.Error
            return
        raise
    raise SystemExit(f"{engine} accepted a certificate for {what}: not verifying, not measured")


def bundled_openssl() -> str | None:
    """cryptography's OpenSSL (what pyOpenSSL drives) and both libraries' versions, None
    without pyOpenSSL."""
    try:
        SSL = _ssl()
    except ImportError:
        return None
    openssl = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    versions = (importlib.import_module(m).__version__ for m in ("OpenSSL", "cryptography"))
    return "{} (pyOpenSSL {}, cryptography {})".format(openssl, *versions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_handshake")
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--only", choices=tuple(ENGINES))
    args = parser.parse_args(argv)

    key_type = trustme.KeyType.ECDSA if args.key == "ecdsa" else trustme.KeyType.RSA
    ca = trustme.CA(key_type=key_type)
    leaf = ca.issue_cert(NAME, key_type=key_type)
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve,
        args=(
            theirs,
            b"".join(b.bytes() for b in leaf.cert_chain_pems),
            leaf.private_key_pem.bytes(),
        ),
        daemon=True,
    )
    server.start()
    port = ours.recv()
    ca_pem = ca.cert_pem.bytes().decode()

    bundled = bundled_openssl()
    names = [args.only] if args.only else [n for n in ENGINES if bundled or "pyopenssl" not in n]
    stranger = trustme.CA(key_type=key_type).cert_pem.bytes().decode()
    for name in names:  # an engine that does not verify is not measured
        _refuses(name, ENGINES[name](ca_pem, port, "wrong.invalid"), "another name")
        _refuses(name, ENGINES[name](stranger, port, NAME), "a CA it does not trust")
    runs = {name: ENGINES[name](ca_pem, port, NAME) for name in names}
    for once in runs.values():  # warm-up: imports, the trust store's first lookups
        for _ in range(20):
            once()
    if args.only:
        for _ in range(args.handshakes):
            runs[args.only]()
        server.kill()
        return

    print(f"machine: {machine()}; loop 10M: {loop_seconds():.2f} s")
    print(f"stdlib ssl: {ssl.OPENSSL_VERSION}; pyOpenSSL: {bundled or 'not installed'}")
    print(f"key: {args.key}; {args.handshakes} handshakes x {args.rounds} rounds, interleaved")
    per: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, once in runs.items():
            started = time.process_time()
            for _ in range(args.handshakes):
                once()
            per[name].append((time.process_time() - started) / args.handshakes * 1e6)
    server.kill()
    base = statistics.median(per[names[0]])
    for name in names:
        median = statistics.median(per[name])
        rounds = " ".join(f"{v:.0f}" for v in per[name])
        print(f"{name:18} {median:7.0f} us  {median / base:5.2f}x  ({rounds})")


if __name__ == "__main__":
    main(sys.argv[1:])
