"""Debian's Postfix and Dovecot, run by a benchmark from a temporary directory on loopback high
ports with their own configuration (no system service is enabled or touched).

Postfix: `postfix -c DIR start-fg` with its own main.cf, master.cf and queue (root only: its
master runs as root and drops to the `postfix` user). Dovecot: `dovecot -F -c DIR/dovecot.conf`,
login processes in Dovecot's high-performance mode (one process serves many connections).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared import embedded

POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
START_S = 30.0
# The servers run on the system's OpenSSL and configuration whatever a benchmark that starts
# them runs on (bench.tls_layers under another OpenSSL's LD_LIBRARY_PATH, say).
_CLIENT_ONLY = ("LD_LIBRARY_PATH", "OPENSSL_CONF")


def _server_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in _CLIENT_ONLY}


def available() -> str | None:
    """None when both can run here, else why not."""
    if os.geteuid() != 0:
        return "Postfix and Dovecot are started as root (their masters drop privileges)"
    for path in (POSTFIX, DOVECOT):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (make blackbox installs it)"
    return None


@dataclass
class MailServers:
    """Ports by name: smtp (STARTTLS offered), smtps, imap, imaps, pop3, pop3s."""

    root: Path
    cert_pem: bytes  # the certificate chain, then its key
    ports: dict[str, int] = field(default_factory=dict)
    _dovecot: subprocess.Popen[bytes] | None = None
    _postfix: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "MailServers":
        self.root.mkdir(parents=True)
        self.root.chmod(0o755)
        cert = self.root / "cert.pem"
        cert.write_bytes(self.cert_pem)
        cert.chmod(0o644)  # Dovecot's config reader and Postfix's smtpd read it
        for name in ("smtp", "smtps", "imap", "imaps", "pop3", "pop3s"):
            self.ports[name] = embedded.free_port()
        try:
            self._postfix = self._start_postfix(cert)
            self._dovecot = self._start_dovecot(cert)
            for name, port in self.ports.items():
                wait_port(port, name)
        except RuntimeError as exc:
            logs = self.logs()
            self.__exit__()
            raise RuntimeError(f"{exc}\n{logs}") from None
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self._postfix is not None:
            # Postfix's master runs detached from the `postfix start-fg` process: stopped by
            # `postfix stop`, and by its pid when that failed.
            master = _pid(self.root / "postfix-queue" / "pid" / "master.pid")
            subprocess.run(
                [POSTFIX, "-c", str(self.root / "postfix"), "stop"],
                env=_server_env(),
                capture_output=True,
                check=False,
            )
            if master is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(master, signal.SIGTERM)
            embedded.stop(self._postfix)
        if self._dovecot is not None:
            embedded.stop(self._dovecot)
        shutil.rmtree(self.root, ignore_errors=True)

    def _start_postfix(self, cert: Path) -> subprocess.Popen[bytes]:
        conf = self.root / "postfix"
        conf.mkdir()
        (self.root / "postfix-queue").mkdir()  # postfix-script makes what is inside
        (self.root / "postfix-data").mkdir()
        shutil.chown(self.root / "postfix-data", "postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.root / "postfix-queue"),
            "data_directory": str(self.root / "postfix-data"),
            "meta_directory": "/etc/postfix",
            "maillog_file": str(self.root / "postfix.log"),
            "maillog_file_prefixes": str(self.root),
            "myhostname": "mail.localhost",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(cert),
            "smtpd_tls_security_level": "may",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "default_process_limit": "200",
            "alias_maps": "",
            "alias_database": "",
        }
        (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        listeners = (
            f"127.0.0.1:{self.ports['smtp']} inet n - n - - smtpd\n"
            f"127.0.0.1:{self.ports['smtps']} inet n - n - - smtpd"
            " -o smtpd_tls_wrappermode=yes\n"
        )
        (conf / "master.cf").write_text(listeners + _POSTFIX_SERVICES)
        return subprocess.Popen(
            [POSTFIX, "-c", str(conf), "start-fg"],
            env=_server_env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "postfix.stderr").open("wb"),
        )

    def _start_dovecot(self, cert: Path) -> subprocess.Popen[bytes]:
        p = self.ports
        conf = self.root / "dovecot.conf"
        conf.write_text(
            f"""
base_dir = {self.root}/dovecot-run
state_dir = {self.root}/dovecot-state
log_path = {self.root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{cert}
disable_plaintext_auth = yes
auth_mechanisms = plain
passdb {{
  driver = static
  args = password=unused-by-the-benchmark
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={self.root}/dovecot-home
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {p["imap"]}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {p["imaps"]}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {p["pop3"]}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {p["pop3s"]}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
}}
"""
        )
        return subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            env=_server_env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "dovecot.stderr").open("wb"),
        )

    def logs(self) -> str:
        out = []
        for name in ("postfix.stderr", "postfix.log", "dovecot.stderr", "dovecot.log"):
            path = self.root / name
            if path.exists():
                out.append(f"--- {name}\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(out)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_port(port: int, name: str) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {START_S:g} s")


# The services Postfix's own daemons need, none chrooted (the temporary directory has no
# chroot tree); Debian's master.cf without its transports.
_POSTFIX_SERVICES = """\
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""
