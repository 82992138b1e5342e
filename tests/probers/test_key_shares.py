"""Client key shares on OpenSSL 3.5 as bench/results/ossl35.md measures them (bench.tls_groups):
what each configuration of testkit.openssl makes a client send, which group a server settles on
and in how many ClientHellos, read from the server's own report (`openssl s_server`).

Each client is a process of its own (`python -m testkit.openssl handshakes`: the agent's
verifying context, a verified handshake, a line and its echo), started with the configuration
as OPENSSL_CONF, since OpenSSL reads it once, when the library starts.

On this host's OpenSSL (Debian 12's 3.0, where `make test` runs) 3.5's group syntax is not
understood and OpenSSL keeps its own default groups: a client started with the one-share file
still completes verified handshakes, with a server that takes P-256 alone among them. The rest
needs OpenSSL 3.5 (X25519MLKEM768, the key-share mark): a build of testkit/openssl.py (`make
bench-openssl`, or BENCH_OPENSSL=DIR) and its `openssl s_server`; without one those tests skip,
saying so.
"""

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from testkit import openssl

ROOT = Path(__file__).resolve().parents[2]
ML_KEM_FIRST: list[str] = []  # s_server's default groups on 3.5: the hybrid preferred
NO_ML_KEM = ["-groups", "X25519:P-256:X448:P-384:P-521"]  # as OpenSSL before 3.5
P256_ONLY = ["-groups", "P-256"]


def _client(port: int, ca: Path, variables: dict[str, str], n: int = 1) -> dict[str, Any]:
    args = ["--port", str(port), "--ca", str(ca), "-n", str(n)]
    done = subprocess.run(
        [sys.executable, "-m", "testkit.openssl", "handshakes", *args],
        env={**os.environ, **variables},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture
def one_share(tmp_path: Path) -> Path:
    return openssl.groups_conf(tmp_path / "one-share.cnf", openssl.ONE_SHARE_GROUPS)


@pytest.fixture
def python_server(ca: tuple[trustme.CA, Path], request: pytest.FixtureRequest) -> Iterator[int]:
    """A server on this process's OpenSSL that echoes a line reversed, as s_server -rev does;
    `request.param` names its one group, or None for its default ones."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca[0].issue_cert(openssl.NAME).configure_cert(ctx)
    if request.param is not None:
        ctx.set_ecdh_curve(request.param)  # OpenSSL 3: that group alone, TLS 1.3's too
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(sock, server_side=True) as tls:
                    line = tls.recv(4096)
                    tls.sendall(line[:-1][::-1] + b"\n")
            except (OSError, ssl.SSLError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(10)


@pytest.mark.parametrize("python_server", [None, "prime256v1"], indirect=True)
def test_on_this_hosts_openssl_the_one_share_file_leaves_handshakes_working(
    python_server: int, ca: tuple[trustme.CA, Path], one_share: Path
) -> None:
    done = _client(python_server, ca[1], {"OPENSSL_CONF": str(one_share)}, n=2)
    assert done["failed"] == [] and done["openssl"] == ssl.OPENSSL_VERSION
    # and verification with it: a server whose CA the client was not given is refused
    other = ca[1].with_name("other.pem")
    trustme.CA().cert_pem.write_to_path(str(other))
    refused = _client(python_server, other, {"OPENSSL_CONF": str(one_share)})
    assert "CERTIFICATE_VERIFY_FAILED" in refused["failed"][0]


# On OpenSSL 3.5: the build's s_server, the client on the build.


@pytest.fixture(scope="module")
def build() -> Path:
    where = openssl.located()
    if where is None:
        pytest.skip(
            "no OpenSSL 3.5 build (make bench-openssl, or BENCH_OPENSSL=DIR): this host's"
            f" {ssl.OPENSSL_VERSION} has no X25519MLKEM768, so key shares on 3.5 are not"
            " tested here"
        )
    return where


def _handshake(
    where: Path,
    tmp_path: Path,
    ca: tuple[trustme.CA, Path],
    server_args: list[str],
    client_conf: Path | None,
    server_conf: Path | None = None,
) -> tuple[int, str]:
    """One verified handshake of a client on the build (with `client_conf`, else its default
    configuration) with the build's s_server: the ClientHellos it took and the group agreed."""
    cert = ca[0].issue_cert(openssl.NAME)
    with openssl.s_server(where, tmp_path, cert, server_args, server_conf) as server:
        offset = server.offset()
        done = _client(server.port, ca[1], openssl.env(where, client_conf))
        said = server.said_since(offset)
    assert done["failed"] == [], done
    assert done["openssl"].startswith("OpenSSL 3.5"), done["openssl"]
    return done["client_hellos"], openssl.negotiated(said)


@pytest.mark.parametrize(
    ("server_args", "hellos", "group"),
    [
        # 3.5's default server prefers the hybrid: it asks again for its key share.
        (ML_KEM_FIRST, 2, "X25519MLKEM768"),
        # A server without ML-KEM takes the one share at once.
        (NO_ML_KEM, 1, "X25519"),
        # P-256 alone: asked again, as 3.5's default client is.
        (P256_ONLY, 2, "prime256v1"),
    ],
    ids=["ML-KEM first", "no ML-KEM", "P-256 only"],
)
def test_on_35_one_share_keeps_ml_kem_for_a_server_that_wants_it_at_a_round_trip(
    build: Path,
    tmp_path: Path,
    ca: tuple[trustme.CA, Path],
    one_share: Path,
    server_args: list[str],
    hellos: int,
    group: str,
) -> None:
    assert _handshake(build, tmp_path, ca, server_args, one_share) == (hellos, group)


@pytest.mark.parametrize(
    ("server_args", "hellos", "group"),
    [(ML_KEM_FIRST, 1, "X25519MLKEM768"), (NO_ML_KEM, 1, "X25519"), (P256_ONLY, 2, "prime256v1")],
    ids=["ML-KEM first", "no ML-KEM", "P-256 only"],
)
def test_on_35_the_default_client_sends_both_shares(
    build: Path,
    tmp_path: Path,
    ca: tuple[trustme.CA, Path],
    server_args: list[str],
    hellos: int,
    group: str,
) -> None:
    assert _handshake(build, tmp_path, ca, server_args, None) == (hellos, group)


def test_on_35_a_server_with_the_one_share_file_still_prefers_ml_kem(
    build: Path, tmp_path: Path, ca: tuple[trustme.CA, Path], one_share: Path
) -> None:
    """The file keeps 3.5's tuples: as a server's configuration it prefers the hybrid, taking a
    default client's share at once, as 3.5's default does."""
    got = _handshake(build, tmp_path, ca, [], None, server_conf=one_share)
    assert got == (1, "X25519MLKEM768")


def test_on_35_the_flat_list_offers_x25519_first(
    build: Path, tmp_path: Path, ca: tuple[trustme.CA, Path]
) -> None:
    """agent-floor.md's list: one X25519 share as well, and still the hybrid for a server that
    prefers it; what it offers, in its order, as the server read it."""
    flat = openssl.groups_conf(tmp_path / "flat.cnf", openssl.FLAT_GROUPS)
    cert = ca[0].issue_cert(openssl.NAME)
    with openssl.s_server(build, tmp_path, cert, ML_KEM_FIRST) as server:
        done = _client(server.port, ca[1], openssl.env(build, flat))
        said = server.said_since(0)
    assert (done["client_hellos"], openssl.negotiated(said)) == (2, "X25519MLKEM768")
    assert openssl.offered(said).lower().startswith("x25519:x25519mlkem768:secp256r1")
