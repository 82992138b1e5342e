"""Debian's Postfix on loopback ports, run by the tests in the foreground (`master -d`) from a
temporary directory: one lifecycle (`PostfixServer`: its folder, queue, start, readiness, log,
stop) under each configuration the tests need. Postfix's master must start as root (it drops to
`mail_owner` for every service); elsewhere these tests skip and say why. It logs to `maillog`
in its directory (postlogd).

`RelayPostfix` here is a plain SMTP server (no TLS, no SASL), an open relay (a `mynetworks` of
0.0.0.0/0) or a normal one, for the open relay test. Nothing leaves the machine: it has no
relayhost, resolves no DNS (`disable_dns_lookups`, `smtp_host_lookup = native`) and its smtp
client is not running, so even mail it accepted would stay queued; and the tests never send
DATA. Each session's `disconnect from` line counts the commands it received
(`ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 commands=4/5`), which is how a test sees that no DATA
was sent. testkit/oauth2/postfix.py's `Postfix` is the submission server.
"""

import asyncio
import atexit
import contextlib
import os
import shutil
import smtplib
import tempfile
import time
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Self

from shared.embedded import free_port

MASTER = "/usr/lib/postfix/sbin/master"
UNSHARE = "/usr/bin/unshare"
START_S = 10.0
# The services an smtpd that authenticates, takes mail or hangs up talks to; each instance
# adds its `inet` listeners. Unix services start on demand: one an instance never uses costs
# nothing.
SERVICES = """\
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
virtual unix - n n - - virtual
postlog unix-dgram n - n - 1 postlogd
"""

# How long a submission to a SendingPostfix waits for each reply. Its first RCPT starts the
# instance's trivial-rewrite and cleanup daemons, a second or two on a loaded machine; what
# takes longer is a fault, and the failure carries the instance's log.
SUBMIT_S = 30.0

__all__ = ["MASTER", "SUBMIT_S", "PostfixServer", "RelayPostfix", "SendingPostfix", "missing"]


def missing() -> str | None:
    if not os.access(MASTER, os.X_OK):
        return f"{MASTER} is missing: `make dovecot` installs Debian's postfix"
    if os.geteuid() != 0:
        return "Postfix's master starts only as root"
    return None


def settled(*files: Path) -> None:
    """Date `files` a minute back: Postfix reads a configuration file or table changed within
    the last second again and again, 300 ms apart, until it is older (one being edited), which
    would cost each start about two seconds."""
    past = time.time() - 60
    for f in files:
        os.utime(f, (past, past))


def single_entries(main_cf: str) -> str:
    """`main_cf` with each parameter once, at its first place with its last value (a later
    line overrides, as in Postfix). Every Postfix process warns of an overriding entry as it
    reads main.cf, postlogd too, and postlogd sends its own warnings to its own socket before
    it opens the log file. That socket holds `net.unix.max_dgram_qlen` datagrams (the kernel's
    default, 10) and a sender blocks on a full one: when the other processes' first lines fill it
    while postlogd starts (a loaded machine), postlogd blocks writing to itself, and every
    process of the instance at its next log line, for good (the smtpd at RCPT waits on a
    trivial-rewrite stuck so, with nothing logged)."""
    entries: dict[str, list[str]] = {}
    name = ""
    for line in main_cf.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():  # a continuation of the parameter above
            entries[name].append(line)
            continue
        name = line.split("=", 1)[0].strip()
        entries[name] = [line]
    return "".join(f"{line}\n" for lines in entries.values() for line in lines)


_QUEUE: Path | None = None  # the process's queue and data directories as Postfix lays them out


async def _queue_layout() -> Path:
    """A queue and data directory laid out by Postfix's own `set-permissions` (subdirectories,
    owners, modes), made once a process and copied for each instance: the script also checks
    every file the package installed, some seconds of work that come out the same each time."""
    global _QUEUE
    if _QUEUE is None:
        d = Path(tempfile.mkdtemp(prefix="postfix-layout-"))
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        os.chmod(d, 0o755)
        for sub in ("etc", "queue", "data"):
            (d / sub).mkdir()
        (d / "etc" / "main.cf").write_text(
            f"compatibility_level = 3.6\nqueue_directory = {d}/queue\n"
            f"data_directory = {d}/data\nmail_owner = postfix\nsetgid_group = postdrop\n"
        )
        (d / "etc" / "master.cf").write_text(SERVICES)
        settled(*(d / "etc").iterdir())
        setup = await asyncio.create_subprocess_exec(
            "/usr/sbin/postfix",
            "-c",
            str(d / "etc"),
            "set-permissions",
            "create-missing",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await setup.communicate()
        if setup.returncode != 0:
            said = out.decode(errors="replace")
            raise RuntimeError(f"postfix set-permissions failed ({setup.returncode}): {said}")
        _QUEUE = d
    return _QUEUE


async def start_master(d: Path, resolv_conf: Path | None = None) -> asyncio.subprocess.Process:
    """Postfix's master in the foreground for the configuration in `d`/etc, its queue and data
    directories in `d` as Postfix lays them out, its log in `d`/maillog; with `resolv_conf`, in
    a mount namespace of its own where that file is /etc/resolv.conf (its DNS resolver: the
    C library's takes no port, and the machine's stays as it is)."""
    layout = await _queue_layout()
    for sub in ("queue", "data"):
        # `cp -a`: the owners and modes too (as root)
        copy = await asyncio.create_subprocess_exec(
            "cp", "-a", str(layout / sub), str(d / sub), stderr=asyncio.subprocess.PIPE
        )
        _, said = await copy.communicate()
        if copy.returncode != 0:
            raise RuntimeError(f"copying the queue layout failed: {said.decode(errors='replace')}")
    # Logging to a file of its own.
    cf = d / "etc" / "main.cf"
    log = f"maillog_file_prefixes = {d}\nmaillog_file = {d}/maillog\n"
    cf.write_text(single_entries(cf.read_text() + log))
    settled(*(d / "etc").iterdir())
    command = [MASTER, "-d", "-c", str(d / "etc")]
    if resolv_conf is not None:
        mount = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        command = [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", mount]
        command += [str(resolv_conf), MASTER, "-d", "-c", str(d / "etc")]
    return await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        # Its own process group: on SIGTERM the master ends every process of its group, then
        # itself (outside a group of its own that fails, and it exits a second later, fatally).
        start_new_session=True,
    )


async def until_listening(
    process: asyncio.subprocess.Process, ports: Iterable[int], log: Callable[[], str]
) -> None:
    """Return once every one of `ports` takes a connection; else stop `process` and raise with
    what it and its `log` said."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_S
    waiting = set(ports)
    while loop.time() < deadline and process.returncode is None:
        for port in list(waiting):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                waiting.discard(port)
        if not waiting:
            return
        await asyncio.sleep(0.05)
    await stop_master(process)
    assert process.stderr is not None
    said = (await process.stderr.read()).decode(errors="replace")
    raise RuntimeError(f"postfix did not start: {said[-2000:]} {log()[-2000:]}")


async def stop_master(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


class PostfixServer:
    """`async with` one: a folder of its own (`where`), its `main_cf()` and an `inet` listener
    for each of `ports` (name: port, with the `inet_services()` line of each), up once every
    port takes a connection, stopped and removed at the end."""

    prefix = "postfix-"

    def __init__(self, resolv_conf: Path | None = None) -> None:
        """`resolv_conf`: the resolver its processes use (`start_master`)."""
        self.ports: dict[str, int] = {}
        self.resolv_conf = resolv_conf
        self.where = Path()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None

    def main_cf(self) -> str:
        """What every instance has; subclasses add theirs."""
        d = self.where
        return f"""compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.mailprobe.test
mydestination =
relayhost =
relay_domains =
"""

    def listeners(self) -> dict[str, str]:
        """Name of each port: the rest of its master.cf `inet` line after the address."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Files of the instance's own in `where` (certificates, tables), before it starts."""

    def services(self) -> str:
        """master.cf lines of the instance's own beside SERVICES (an smtp client)."""
        return ""

    async def __aenter__(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix=self.prefix)
        self.where = d = Path(self._dir.name)
        os.chmod(d, 0o755)
        (d / "etc").mkdir()
        listeners = self.listeners()
        self.ports = {name: free_port() for name in listeners}
        self.prepare()
        (d / "etc" / "main.cf").write_text(self.main_cf())
        inet = "".join(
            f"127.0.0.1:{self.ports[name]} inet {rest}\n" for name, rest in listeners.items()
        )
        (d / "etc" / "master.cf").write_text(inet + SERVICES + self.services())
        try:
            self._process = await start_master(d, self.resolv_conf)
            await until_listening(self._process, self.ports.values(), self.log)
        except BaseException:
            self._dir.cleanup()
            raise
        return self

    def log(self) -> str:
        path = self.where / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            await stop_master(self._process)
        if self._dir is not None:
            self._dir.cleanup()


class RelayPostfix(PostfixServer):
    """`async with RelayPostfix(open_relay=True) as pf:` listens on `pf.port`, greeting as
    `mail.mailprobe.test`."""

    prefix = "postfix-relay-"

    def __init__(self, *, open_relay: bool) -> None:
        super().__init__()
        self.open_relay = open_relay

    @property
    def port(self) -> int:
        return self.ports["smtp"]

    def listeners(self) -> dict[str, str]:
        return {"smtp": "n - n - - smtpd"}

    def main_cf(self) -> str:
        # Postfix's default rules, relaying for `mynetworks` only; open is the classic mistake
        # of a `mynetworks` that takes in the world, closed one that does not take this client.
        trusted = "0.0.0.0/0" if self.open_relay else "192.0.2.0/24"
        return super().main_cf() + (
            f"mynetworks = {trusted}\n"
            "disable_dns_lookups = yes\n"
            "smtp_host_lookup = native\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
            "smtpd_recipient_restrictions =\n"
        )

    async def sessions(self, count: int) -> list[str]:
        """The `disconnect from` lines of the first `count` sessions, once all are logged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_S
        while True:
            lines = [
                line
                for line in self.log().splitlines()
                # (`commands=0/0`: the probe of `until_listening`)
                if " disconnect from " in line and "commands=0/0" not in line
            ]
            if len(lines) >= count or loop.time() > deadline:
                return lines
            await asyncio.sleep(0.05)


class SendingPostfix(PostfixServer):
    """A Postfix that takes mail from loopback on `port` and sends everything for `domain` to
    `[to_host]:to_port` (127.0.0.1 unless named) with its smtp client, TLS as `tls_level` says
    (`smtp_tls_security_level`: `none`, `may`, `encrypt`), greeting as `mail.mailprobe.test`;
    what it takes passes the milter at loopback port `milter` when one is given (OpenDKIM);
    `extra_cf`: more main.cf lines (a TLS policy table, a CA file).
    No DNS: the one route is the transport table's; other domains stay queued."""

    prefix = "postfix-sender-"

    def __init__(
        self,
        domain: str,
        to_port: int,
        tls_level: str,
        milter: int | None = None,
        extra_cf: str = "",
        *,
        to_host: str = "127.0.0.1",
        resolv_conf: Path | None = None,
    ) -> None:
        super().__init__(resolv_conf)
        self.domain, self.to_port, self.tls_level = domain, to_port, tls_level
        self.to_host = to_host
        self.milter, self.extra_cf = milter, extra_cf

    @property
    def port(self) -> int:
        return self.ports["smtp"]

    def listeners(self) -> dict[str, str]:
        return {"smtp": "n - n - - smtpd"}

    def services(self) -> str:
        return "smtp unix - - n - - smtp\n"

    def main_cf(self) -> str:
        return (
            super().main_cf()
            + (
                "mynetworks = 127.0.0.0/8\n"
                "disable_dns_lookups = yes\n"
                "smtp_host_lookup = native\n"
                "transport_maps = inline:"
                f"{{ {self.domain}=smtp:[{self.to_host}]:{self.to_port} }}\n"
                f"smtp_tls_security_level = {self.tls_level}\n"
                "smtp_tls_loglevel = 1\n"
                "smtpd_relay_restrictions = permit_mynetworks, reject\n"
                "smtpd_recipient_restrictions =\n"
                "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n"
            )
            + (
                ""
                if self.milter is None
                else f"smtpd_milters = inet:127.0.0.1:{self.milter}\n"
                "milter_default_action = tempfail\n"
            )
            + self.extra_cf
        )

    async def submit(
        self,
        mail_from: str,
        to: list[str],
        message: bytes | EmailMessage,
        reply_within: float = SUBMIT_S,
    ) -> None:
        """`message` handed to this Postfix over SMTP; a refusal, a hang-up or a reply not
        given within `reply_within` seconds raises AssertionError with the tail of its log."""

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=reply_within) as s:
                if isinstance(message, EmailMessage):
                    s.send_message(message, from_addr=mail_from, to_addrs=to)
                else:
                    s.sendmail(mail_from, to, message)

        started = asyncio.get_running_loop().time()
        try:
            await asyncio.to_thread(send)
        except (smtplib.SMTPException, OSError) as e:
            took = asyncio.get_running_loop().time() - started
            raise AssertionError(
                f"postfix took no mail ({e!r} after {took:.1f} s); it logged: {self.log()[-4000:]}"
            ) from e

    async def until_logged(self, text: str, within: float = START_S) -> str:
        """The first log line holding `text`, waited for; AssertionError past `within`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for line in self.log().splitlines():
                if text in line:
                    return line
            if loop.time() > deadline:
                raise AssertionError(f"postfix never logged {text!r}: {self.log()[-3000:]}")
            await asyncio.sleep(0.05)
