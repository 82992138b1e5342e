"""Debian's OpenDKIM on a loopback port, in the foreground, signing as the tests say: each From
domain of `signing` with a key made per run for the `d=` domain it maps to (equal: aligned,
another: unaligned), selector `SELECTOR`. A Postfix names it as its milter. It needs root (it
drops to its `opendkim` user) and a directory others cannot write: a temporary one under /run.
`make opendkim` installs it; `missing()` says why it cannot run."""

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from shared.embedded import free_port

OPENDKIM = "/usr/sbin/opendkim"
GENKEY = "/usr/sbin/opendkim-genkey"
SELECTOR = "mp2026"
START_S = 10.0


def missing() -> str | None:
    if not os.access(OPENDKIM, os.X_OK) or not os.access(GENKEY, os.X_OK):
        return f"{OPENDKIM} is missing: `make opendkim` installs Debian's opendkim"
    if os.geteuid() != 0:
        return "OpenDKIM starts only as root here (it drops to its user)"
    return None


class OpenDkim:
    """`async with OpenDkim({"a.test": "a.test"}) as milter`: `milter.port`, and
    `milter.records` the key records to serve (name → TXT presentation)."""

    def __init__(self, signing: Mapping[str, str]) -> None:
        self.signing = dict(signing)
        self.port = free_port()
        self.records: dict[str, str] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="mailprobe-opendkim-", dir="/run")
        where = Path(self._dir.name)
        os.chmod(where, 0o755)
        keys, table = [], []
        for d in sorted(set(self.signing.values())):
            made = where / d
            made.mkdir()
            gen = await asyncio.create_subprocess_exec(
                GENKEY, "-b", "2048", "-d", d, "-s", SELECTOR, "-D", str(made)
            )
            if await gen.wait() != 0:
                raise RuntimeError(f"opendkim-genkey failed for {d}")
            private = made / f"{SELECTOR}.private"
            shutil.chown(private, "opendkim")
            private.chmod(0o600)
            published = (made / f"{SELECTOR}.txt").read_text()
            record = "".join(p.split('"')[1] for p in published.split("\n") if '"' in p)
            name = f"{SELECTOR}._domainkey.{d}"
            self.records[name] = " ".join(
                f'"{record[i : i + 250]}"' for i in range(0, len(record), 250)
            )
            keys.append(f"{d} {d}:{SELECTOR}:{private}")
        for frm, d in sorted(self.signing.items()):
            table.append(f"*@{frm} {d}")
        (where / "keys").write_text("\n".join(keys) + "\n")
        (where / "signing").write_text("\n".join(table) + "\n")
        conf = where / "opendkim.conf"
        conf.write_text(
            f"Mode s\nKeyTable file:{where}/keys\nSigningTable refile:{where}/signing\n"
            f"Socket inet:{self.port}@127.0.0.1\nBackground no\nSyslog no\nUserID opendkim\n"
            f"InternalHosts 127.0.0.1\nPidFile {where}/opendkim.pid\n"
        )
        self._proc = await asyncio.create_subprocess_exec(
            OPENDKIM, "-f", "-x", str(conf), stderr=asyncio.subprocess.PIPE
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_S
        while loop.time() < deadline and self._proc.returncode is None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            except OSError:
                await asyncio.sleep(0.05)
        said = await self._proc.stderr.read() if self._proc.stderr else b""
        await self.__aexit__(None, None, None)
        raise RuntimeError(f"opendkim did not listen: {said!r}")

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
