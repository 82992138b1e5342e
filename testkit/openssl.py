"""Another OpenSSL under Python's `ssl` (issue 70): the release line of the shipped image's Debian
(`deploy/Dockerfile` is `python:3.11-slim`, Debian 13, OpenSSL 3.5), built on this host from
Debian's source tarball into a cache outside the repository, so that the agent's TLS checks can
be measured on it (`make bench exporter` with BENCH_OPENSSL, `python -m bench.tls_groups`) with
its default key shares and with one.

OpenSSL 3.x keeps the ABI of 3.0, so this host's Python 3.11 `_ssl` (built against 3.0) runs
on the build in a process started with `LD_LIBRARY_PATH` at its `lib/` (`env`). The build's
OPENSSLDIR is the system's `/usr/lib/ssl`: the same trust store and default `openssl.cnf` as
the system's OpenSSL (neither sets TLS groups, as Debian 13's does not).

    python -m testkit.openssl handshakes --port P --ca FILE [-n N]
        N verified handshakes with a server on a loopback port, on the agent's verifying
        context and this process's OpenSSL (run it with `env(...)`); prints JSON: the
        OpenSSL, the CPU, the ClientHellos written, what failed.
    python -m testkit.openssl build [--version V]   (`make bench-openssl`)
        downloads Debian's orig tarball from the mirror apt is set up with, checks its SHA-256
        against `RELEASES`, builds the libraries and the `openssl` program (`nice`, all cores:
        ~10-15 minutes on 2 cores) and installs them under `prefix(V)`; a finished build is
        reused. Prints the prefix.

Nothing of `make test` or `make run` needs it: a test that wants it skips, saying so, when
`located()` finds none.
"""

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from agent.probers.tls import build_ssl_contexts

# Debian 13's OpenSSL orig tarballs and their SHA-256, as Debian's source index lists them.
# 3.5.9 is listed there but was not yet on the mirror when this was written: 3.5.7 is the one
# the image had when its package list was taken, and the default.
RELEASES = {
    "3.5.7": "a8c0d28a529ca480f9f36cf5792e2cd21984552a3c8e4aa11a24aa31aeac98e8",
    "3.5.9": "603f5602e2eef00d77fbd429d34dcd5822bb301757a1bc9cdb24c670f1eb859a",
}
DEFAULT = "3.5.7"
# Client key shares on OpenSSL 3.5 (bench/results/ossl35.md). 3.5's default groups
# (ssl/t1_lib.c TLS_DEFAULT_GROUP_LIST) mark X25519MLKEM768 and X25519 for a key share each:
DEFAULT_GROUPS = (
    "?*X25519MLKEM768 / ?*X25519:?secp256r1 / ?X448:?secp384r1:?secp521r1 / ?ffdhe2048:?ffdhe3072"
)
# the same list, order and tuples (a server's preference) with the mark on X25519 alone;
ONE_SHARE_GROUPS = DEFAULT_GROUPS.replace("?*X25519MLKEM768", "?X25519MLKEM768")
# agent-floor.md's list: one X25519 share too, X25519 offered first, no tuples.
FLAT_GROUPS = "*X25519:X25519MLKEM768:secp256r1:X448:secp384r1:secp521r1:ffdhe2048:ffdhe3072"
ENV_VAR = "BENCH_OPENSSL"  # a prefix to use instead of the cached default build
_DONE = ".mailprobe-built"  # written last: a prefix without it is an unfinished build


def cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mailprobe"


def prefix(version: str = DEFAULT) -> Path:
    return cache() / f"openssl-{version}"


def built(where: Path) -> bool:
    return (where / _DONE).is_file() and (where / "lib" / "libssl.so.3").is_file()


def located() -> Path | None:
    """BENCH_OPENSSL when set (an error when it holds no build), else the default release's
    cached build when there is one."""
    named = os.environ.get(ENV_VAR)
    if named:
        where = Path(named).expanduser()
        if not (where / "lib" / "libssl.so.3").is_file():
            raise SystemExit(f"{ENV_VAR}={named}: no lib/libssl.so.3 there")
        return where
    return prefix() if built(prefix()) else None


def env(where: Path, conf: Path | None = None) -> dict[str, str]:
    """The variables that put a process's `ssl` on the build at `where`, reading `conf` as its
    OpenSSL configuration when given (else the build's default, /usr/lib/ssl/openssl.cnf)."""
    out = {"LD_LIBRARY_PATH": str(where / "lib")}
    if conf is not None:
        out["OPENSSL_CONF"] = str(conf)
    return out


def groups_conf(path: Path, groups: str) -> Path:
    """An OpenSSL configuration at `path` whose only setting is `groups` for every context
    (`system_default`); OpenSSL before 3.5 does not understand 3.5's syntax and keeps its own."""
    path.write_text(
        "openssl_conf = openssl_init\n\n[openssl_init]\nssl_conf = ssl_sect\n\n"
        "[ssl_sect]\nsystem_default = system_default_sect\n\n"
        f"[system_default_sect]\nGroups = {groups}\n"
    )
    return path


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` set in this process's environment meanwhile: what a process started now
    (a spawned `multiprocessing` one, say) inherits."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def program(where: Path) -> list[str]:
    """The build's `openssl` program, to run with `env(where)`."""
    return [str(where / "bin" / "openssl")]


def python_version(variables: dict[str, str]) -> str:
    """`ssl.OPENSSL_VERSION` of a Python started with `variables`."""
    done = subprocess.run(
        [sys.executable, "-c", "import ssl; print(ssl.OPENSSL_VERSION)"],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def debian_mirror() -> str:
    """The first Debian archive (a URI ending in /debian) apt is set up with."""
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in lists:
        try:
            text = path.read_text()
        except OSError:
            continue
        pattern = r"(?:^URIs:|^deb(?:-src)?(?: \[[^]]*\])?)\s+(\S+)"
        for uri in re.findall(pattern, text, re.M):
            archive = str(uri).rstrip("/")
            if archive.endswith("/debian"):
                return archive
    raise SystemExit("no Debian archive in apt's sources: nothing to download the source from")


def _download(version: str, into: Path) -> Path:
    name = f"openssl_{version}.orig.tar.gz"
    tarball = into / name
    if not tarball.is_file():
        url = f"{debian_mirror()}/pool/main/o/openssl/{name}"
        print(f"downloading {url}", flush=True)
        part = tarball.with_suffix(".part")
        with urllib.request.urlopen(url, timeout=60) as reply, part.open("wb") as out:
            shutil.copyfileobj(reply, out)
        part.rename(tarball)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != RELEASES[version]:
        tarball.unlink()
        raise SystemExit(f"{name}: SHA-256 {digest}, expected {RELEASES[version]}: removed")
    return tarball


def build(version: str = DEFAULT) -> Path:
    """The build of `version` under `prefix(version)`, made when missing."""
    where = prefix(version)
    if built(where):
        return where
    cache().mkdir(parents=True, exist_ok=True)
    tarball = _download(version, cache())
    jobs = str(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(dir=cache()) as tmp:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        source = Path(tmp) / f"openssl-{version}"
        shutil.rmtree(where, ignore_errors=True)
        for step in (
            [
                "./Configure",
                f"--prefix={where}",
                "--libdir=lib",
                "--openssldir=/usr/lib/ssl",
                "shared",
                "no-tests",
                "no-docs",
            ],
            ["make", f"-j{jobs}", "build_sw"],
            ["make", "install_sw"],
        ):
            print("+", " ".join(step), flush=True)
            subprocess.run(["nice", "-n", "10", *step], cwd=source, check=True)
    (where / _DONE).write_text(version + "\n")
    return where


# The build's `openssl s_server`, and a client's handshakes, for bench.tls_groups and the tests.

NAME = "localhost"
LINE = b"mailprobe\n"


@dataclass
class Server:
    """The build's `openssl s_server -rev` on a loopback port: it sends each line back reversed
    and writes a summary of each handshake to `log`."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def said_since(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def offset(self) -> int:
        return self.log.stat().st_size


@contextlib.contextmanager
def s_server(
    where: Path, directory: Path, cert: trustme.LeafCert, args: list[str], conf: Path | None = None
) -> Iterator[Server]:
    """The build's s_server holding `cert`, with `args` (`-groups P-256`, say), on the build's
    default configuration or `conf`, whatever this process was started with."""
    key_file, cert_file = directory / "key.pem", directory / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    variables = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    variables.update(env(where, conf))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    log = directory / f"s_server-{port}.log"
    command = ["s_server", "-rev", "-accept", f"127.0.0.1:{port}"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*program(where), *command, "-cert", str(cert_file), "-key", str(key_file), *args],
            env=variables,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while "ACCEPT" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"s_server {args}: {log.read_text()[-500:]}")
            time.sleep(0.02)
        yield Server(port, process, log)
    finally:
        process.terminate()
        process.wait(10)


def negotiated(said: str) -> str:
    """The group of the last handshake in an `s_server` log excerpt."""
    found = re.findall(r"^(?:Negotiated TLS1\.3 group|Peer Temp Key): (.+)$", said, re.M)
    if not found:
        return "?"
    kind, *rest = str(found[-1]).split(", ")  # "X25519, 253 bits", "ECDH, prime256v1, 256 bits"
    return rest[0] if kind == "ECDH" and rest else kind


def offered(said: str) -> str:
    """The groups the client of the last handshake offered, as an `s_server` log names them."""
    found = re.findall(r"^Supported groups: (.+)$", said, re.M)
    return found[-1].strip() if found else "?"


def handshake(ctx: ssl.SSLContext, port: int) -> None:
    """A TCP connect, a verified handshake for NAME, a line sent and its echo read (the server's
    session tickets with it), close."""
    raw = socket.create_connection(("127.0.0.1", port))
    with raw, ctx.wrap_socket(raw, server_hostname=NAME) as tls:
        tls.sendall(LINE)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = tls.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {reply!r}")
            reply += chunk


@dataclass
class Handshakes:
    cpu_s: float  # this process's, user + system
    client_hellos: int  # written, when counted: 2 a handshake means a HelloRetryRequest
    failed: list[str]


def handshakes(ctx: ssl.SSLContext, port: int, n: int, count_hellos: bool) -> Handshakes:
    hellos = 0

    def on_message(*args: object) -> None:
        nonlocal hellos
        hello = ssl._TLSMessageType.CLIENT_HELLO  # type: ignore[attr-defined]
        if args[1] == "write" and args[4] == hello:
            hellos += 1

    # The context's message callback (Python's, for debugging) sees every handshake message.
    ctx._msg_callback = on_message if count_hellos else None  # type: ignore[attr-defined]
    failed: list[str] = []
    cpu0 = _cpu_s()
    for _ in range(n):
        try:
            handshake(ctx, port)
        except (OSError, ssl.SSLError) as exc:
            failed.append(repr(exc))
    return Handshakes(_cpu_s() - cpu0, hellos, failed)


def _cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m testkit.openssl")
    parser.add_argument("command", choices=("build", "handshakes"))
    parser.add_argument("--version", choices=sorted(RELEASES), default=DEFAULT)
    parser.add_argument("--port", type=int, help="handshakes': the server's loopback port")
    parser.add_argument("--ca", type=Path, help="handshakes': the CA file the server's cert is of")
    parser.add_argument("-n", type=int, default=1)
    args = parser.parse_args()
    if args.command == "build":
        where = build(args.version)
        print(f"{where}: {python_version(env(where))}")
        return
    # On the agent's verifying context, built as the agent does, with the server's CA.
    ctx = build_ssl_contexts(cadata=args.ca.read_text()).verified
    done = handshakes(ctx, args.port, args.n, count_hellos=True)
    print(json.dumps({"openssl": ssl.OPENSSL_VERSION, **dataclasses.asdict(done)}))


if __name__ == "__main__":
    main()
