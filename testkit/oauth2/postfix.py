"""Debian's Postfix as a private submission server on loopback ports, run by the tests in the
foreground (`master -d`) from a temporary directory: SMTP with STARTTLS and SMTPS, AUTH only
after TLS, through Dovecot's auth socket (`smtpd_sasl_type = dovecot`), so its XOAUTH2 and
OAUTHBEARER are Dovecot's OAuth2 passdb's. Postfix's master must start as root (it drops to
`mail_owner` for every service); elsewhere these tests skip and say why. Nothing is relayed:
the instance has no destination and no relay, and delivers nothing. It logs to `maillog` in
its directory (postlogd).
"""

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import trustme

from shared.embedded import free_port

MASTER = "/usr/lib/postfix/sbin/master"
POSTCONF = "/usr/sbin/postconf"
START_S = 10.0
MAILBOX_USERS = ("alice", "bob")
# The services an smtpd that authenticates and hangs up talks to; no delivery agent.
_SERVICES = """\
{smtp} inet n - n - - smtpd
{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
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


def missing() -> str | None:
    if not os.access(MASTER, os.X_OK):
        return f"{MASTER} is missing: `make dovecot` installs Debian's postfix"
    if os.geteuid() != 0:
        return "Postfix's master starts only as root"
    return None


async def start_master(d: Path) -> asyncio.subprocess.Process:
    """Postfix's master in the foreground for the configuration in `d`/etc (its queue set up
    by Postfix itself, its log in `d`/maillog)."""
    # Postfix's own set-up of a queue directory: the subdirectories, owners and modes.
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
    # Logging to a file of its own; set-permissions fails with one set, so it comes after.
    with (d / "etc" / "main.cf").open("a") as f:
        f.write(f"maillog_file_prefixes = {d}\nmaillog_file = {d}/maillog\n")
    return await asyncio.create_subprocess_exec(
        MASTER,
        "-d",
        "-c",
        str(d / "etc"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
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


class Postfix:
    """`async with Postfix(ca, auth_socket) as pf:` listens on `pf.ports["smtp"]` (STARTTLS)
    and `pf.ports["smtps"]` (implicit TLS), authenticating through Dovecot at `auth_socket`; with
    `mailboxes` (Dovecot's homes) it delivers mail for example.com there, as `owner` (uid, gid),
    and relays nothing else."""

    def __init__(
        self,
        ca: trustme.CA,
        auth_socket: Path,
        mailboxes: Path | None = None,
        owner: tuple[int, int] = (0, 0),
    ) -> None:
        self.ca = ca
        self.auth_socket = auth_socket
        self.mailboxes = mailboxes
        self.owner = owner
        self.ports: dict[str, int] = {}
        self.where = Path()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None

    def _main_cf(self) -> str:
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
mynetworks = 127.0.0.1/32
smtpd_tls_cert_file = {d}/server.pem
smtpd_tls_key_file = {d}/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.auth_socket}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
""" + self._delivery()

    def _delivery(self) -> str:
        """With `mailboxes`: mail for MAILBOX_USERS at example.com goes into
        `<mailboxes>/<user>/Maildir/` (Postfix's virtual delivery agent, as `owner`), where
        Dovecot reads it."""
        if self.mailboxes is None:
            return ""
        return f"""virtual_mailbox_domains = example.com
virtual_mailbox_base = {self.mailboxes}
virtual_mailbox_maps = texthash:{self.where}/etc/mailboxes
virtual_uid_maps = static:{self.owner[0]}
virtual_gid_maps = static:{self.owner[1]}
"""

    async def __aenter__(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="postfix-")
        self.where = d = Path(self._dir.name)
        os.chmod(d, 0o755)
        for sub in ("etc", "queue", "data"):
            (d / sub).mkdir()
        shutil.chown(d / "data", "postfix")
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(d / "server.key"))
        (d / "server.key").chmod(0o600)
        with (d / "server.pem").open("wb") as f:
            for pem in cert.cert_chain_pems:
                f.write(pem.bytes())
        self.ports = {"smtp": free_port(), "smtps": free_port()}
        (d / "etc" / "main.cf").write_text(self._main_cf())
        (d / "etc" / "master.cf").write_text(_SERVICES.format(**self.ports))
        # The virtual delivery agent takes no substitution from a regexp table: one line a user.
        (d / "etc" / "mailboxes").write_text(
            "".join(f"{user}@example.com {user}/Maildir/\n" for user in MAILBOX_USERS)
        )
        self._process = await start_master(d)
        await until_listening(self._process, self.ports.values(), self.log)
        return self

    def log(self) -> str:
        path = self.where / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    async def _stop(self) -> None:
        assert self._process is not None
        await stop_master(self._process)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()
        if self._dir is not None:
            self._dir.cleanup()
