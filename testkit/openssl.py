"""Another OpenSSL under Python's `ssl` (issue 70): the release line of the shipped image's Debian
(`deploy/Dockerfile` is `python:3.11-slim`, Debian 13, OpenSSL 3.5), built on this host from
Debian's source tarball into a cache outside the repository, so that the agent's TLS checks can
be measured on it (`make bench exporter` with BENCH_OPENSSL) and the image's OpenSSL
configuration (deploy/openssl-agent.cnf) tested on it.

OpenSSL 3.x keeps the ABI of 3.0, so this host's Python 3.11 `_ssl` (built against 3.0) runs
on the build in a process started with `LD_LIBRARY_PATH` at its `lib/` (`env`). The build's
OPENSSLDIR is the system's `/usr/lib/ssl`: the same trust store and default `openssl.cnf` as
the system's OpenSSL (neither sets TLS groups, as Debian 13's does not).

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
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# Debian 13's OpenSSL orig tarballs and their SHA-256, as Debian's source index lists them.
# 3.5.9 is listed there but was not yet on the mirror when this was written: 3.5.7 is the one
# the image had when its package list was taken, and the default.
RELEASES = {
    "3.5.7": "a8c0d28a529ca480f9f36cf5792e2cd21984552a3c8e4aa11a24aa31aeac98e8",
    "3.5.9": "603f5602e2eef00d77fbd429d34dcd5822bb301757a1bc9cdb24c670f1eb859a",
}
DEFAULT = "3.5.7"
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m testkit.openssl")
    parser.add_argument("command", choices=("build",))
    parser.add_argument("--version", choices=sorted(RELEASES), default=DEFAULT)
    args = parser.parse_args()
    where = build(args.version)
    print(f"{where}: {python_version(env(where))}")


if __name__ == "__main__":
    main()
