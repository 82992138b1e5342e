"""Debian's Postfix on a loopback port as a plain SMTP server (no TLS, no SASL), configured as
an open relay (a `mynetworks` of 0.0.0.0/0) or as a normal one, for the open relay test. Run
in the foreground (`master -d`) from a temporary directory, as testkit/oauth2/postfix.py runs
its own: its master starts as root (it drops to `postfix` for its services), elsewhere the
tests skip and say why. Nothing leaves the machine: it has no relayhost, resolves no DNS
(`disable_dns_lookups`, `smtp_host_lookup = native`) and its smtp client is not running, so
even mail it accepted would stay queued; and the tests never send DATA. It logs to `maillog`
in its directory: each session's `disconnect from` line counts the commands it received
(`ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 commands=4/5`), which is how a test sees that no DATA
was sent.
"""

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from shared.embedded import free_port
from testkit.oauth2.postfix import missing, start_master, stop_master, until_listening

START_S = 10.0
_SERVICES = """\
smtp_test inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
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
postlog unix-dgram n - n - 1 postlogd
"""

__all__ = ["RelayPostfix", "missing"]


class RelayPostfix:
    """`async with RelayPostfix(open_relay=True) as pf:` listens on `pf.port`, greeting as
    `mail.mailprobe.test`."""

    def __init__(self, *, open_relay: bool) -> None:
        self.open_relay = open_relay
        self.port = 0
        self.where = Path()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None

    def _main_cf(self) -> str:
        d = self.where
        # Postfix's default rules, relaying for `mynetworks` only; open is the classic mistake
        # of a `mynetworks` that takes in the world, closed one that does not take this client.
        trusted = "0.0.0.0/0" if self.open_relay else "192.0.2.0/24"
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
mynetworks = {trusted}
disable_dns_lookups = yes
smtp_host_lookup = native
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
"""

    async def __aenter__(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="postfix-relay-")
        self.where = d = Path(self._dir.name)
        os.chmod(d, 0o755)
        for sub in ("etc", "queue", "data"):
            (d / sub).mkdir()
        shutil.chown(d / "data", "postfix")
        self.port = free_port()
        (d / "etc" / "main.cf").write_text(self._main_cf())
        (d / "etc" / "master.cf").write_text(
            _SERVICES.replace("smtp_test inet", f"127.0.0.1:{self.port} inet")
        )
        self._process = await start_master(d)
        await until_listening(self._process, [self.port], self.log)
        return self

    def log(self) -> str:
        path = self.where / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

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
