"""Debian's Dovecot (2.3) with its OAuth2 passdb, run by the tests in the foreground from a
temporary directory on loopback ports: IMAP (STARTTLS) and IMAPS, POP3 (STLS) and POP3S, and
an auth socket Postfix's `smtpd_sasl_type = dovecot` can use. Tokens are validated locally as
JWTs (`introspection_mode = local`) against the key of testkit/oauth2/issuer.py; nothing is
fetched. It runs unprivileged: as the invoking user, or under root as Debian's `dovecot` user
(its login processes refuse root), which then owns the directory.

Nothing is downloaded at test time: `make dovecot` (and `make test`, through `make test-debs`)
installs the packages when they are missing.
"""

import asyncio
import contextlib
import grp
import os
import pwd
import signal
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import trustme

from shared.embedded import free_port
from testkit.oauth2.issuer import ISSUER, SCOPE, TokenIssuer
from testkit.trust import trusting

DOVECOT = "/usr/sbin/dovecot"
SETPRIV = "/usr/bin/setpriv"
IMAP = "/usr/lib/dovecot/imap"
POP3 = "/usr/lib/dovecot/pop3"
START_S = 10.0


def missing() -> str | None:
    for path in (DOVECOT, IMAP, POP3):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: `make dovecot` installs Debian's dovecot-imapd/pop3d"
    return None


class Dovecot:
    """`async with Dovecot(ca) as dc:` serves IMAP/POP3 for any user with a token of
    `dc.issuer`, with a certificate for 127.0.0.1 and localhost from `ca`."""

    def __init__(self, ca: trustme.CA, passwords: Mapping[str, str] | None = None) -> None:
        """`passwords`: users (`alice@example.com`) who may also log in with a password."""
        self.ca = ca
        self.passwords = dict(passwords or {})
        self.ports: dict[str, int] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.where = Path()
        self.issuer: TokenIssuer

    @property
    def auth_socket(self) -> Path:
        return self.where / "run" / "auth-client"

    @property
    def homes(self) -> Path:
        """Each user's home, `<homes>/<local part>`, with its mail in `Maildir/`."""
        return self.where / "home"

    @property
    def owner(self) -> tuple[int, int]:
        """The uid and gid that own the mail."""
        account = _account()
        return account.pw_uid, account.pw_gid

    def _config(self) -> str:
        d = self.where
        account = _account()
        user = account.pw_name
        group = grp.getgrgid(account.pw_gid).gr_name
        p = self.ports
        return f"""
base_dir = {d}/run
state_dir = {d}/state
instance_name = dovecot-{d.name}
log_path = {d}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
ssl = yes
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = xoauth2 oauthbearer{" plain login" if self.passwords else ""}
auth_verbose = yes
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
{self._password_passdb()}
userdb {{
  driver = static
  args = uid={account.pw_uid} gid={account.pw_gid} home={d}/home/%n
}}
mail_location = maildir:~/Maildir
first_valid_uid = {account.pw_uid}
last_valid_uid = {account.pw_uid}
# A refused token is answered at once, not after the default 2 s (tests wait on each).
auth_failure_delay = 0
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {p["imap"]}
  }}
  inet_listener imaps {{
    port = {p["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {p["pop3"]}
  }}
  inet_listener pop3s {{
    port = {p["pop3s"]}
    ssl = yes
  }}
}}
service auth {{
  unix_listener auth-client {{
    mode = 0666
  }}
}}
# No growing delay per client IP after refused tokens (every test client is 127.0.0.1).
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""

    def _password_passdb(self) -> str:
        if not self.passwords:
            return ""
        return f"""passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {self.where}/passwd
}}"""

    def _oauth2_config(self) -> str:
        return f"""introspection_mode = local
local_validation_key_dict = fs:posix:prefix={self.where}/keys/
username_attribute = email
issuers = {ISSUER}
scope = {SCOPE}
"""

    async def __aenter__(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="dovecot-")
        self.where = d = Path(self._dir.name)
        for sub in ("run", "state", "home", "keys"):
            (d / sub).mkdir()
        self.issuer = TokenIssuer(d / "keys")
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(d / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
        for chain in cert.cert_chain_pems[1:]:
            with (d / "server.pem").open("ab") as f:
                f.write(chain.bytes())
        self.ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
        (d / "oauth2.conf.ext").write_text(self._oauth2_config())
        (d / "passwd").write_text("".join(f"{u}:{p}\n" for u, p in self.passwords.items()))
        config = d / "dovecot.conf"
        config.write_text(self._config())
        _hand_over(d, _account())
        await self.start()
        return self

    async def start(self) -> None:
        """Start (again, after `stop`) on the same ports, with the same mail."""
        account = _account()
        # As the mail's owner: setpriv (util-linux) changes the ids and runs Dovecot in its
        # place (uvloop's subprocesses take no `user` or `group`).
        self._process = await asyncio.create_subprocess_exec(
            SETPRIV,
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            "--",
            DOVECOT,
            "-F",
            "-c",
            str(self.where / "dovecot.conf"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its process group: `stop` ends every one of them
        )
        await self._ready()

    async def stop(self) -> None:
        """Stop it as an outage does (a crash, `systemctl stop`): every process, the auth
        process Postfix's open connections would keep alive included."""
        assert self._process is not None
        pgid = self._process.pid
        await self._stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def log(self) -> str:
        path = self.where / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def _ready(self) -> None:
        """Until every listener accepts a connection."""
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_S
        waiting = dict(self.ports)
        while loop.time() < deadline and self._process.returncode is None:
            for name, port in list(waiting.items()):
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    del waiting[name]
            if not waiting:
                return
            await asyncio.sleep(0.05)
        await self._stop()
        assert self._process.stderr is not None
        said = (await self._process.stderr.read()).decode(errors="replace")
        raise RuntimeError(f"dovecot did not start: {said[-2000:]} {self.log()[-2000:]}")

    async def _stop(self) -> None:
        assert self._process is not None
        if self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()
        if self._dir is not None:
            self._dir.cleanup()


def _hand_over(d: Path, account: pwd.struct_passwd) -> None:
    """`d` to the account Dovecot runs as. Postfix's smtpd (another user) reaches the auth
    socket through it, so it is world-searchable; the private key stays Dovecot's alone."""
    for path in (d, *d.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)
    d.chmod(0o755)
    (d / "server.key").chmod(0o600)


def _account() -> pwd.struct_passwd:
    """Who Dovecot runs as: the invoking user, or `dovecot` under root."""
    if os.geteuid() == 0:
        return pwd.getpwnam("dovecot")
    return pwd.getpwuid(os.geteuid())


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    return trusting(ca)
