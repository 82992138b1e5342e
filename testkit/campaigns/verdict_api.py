"""The verdict campaign's monitors, as an owner makes them: through the API (create, check-now,
disable), `python -m controller export` and `apply -f`, and what the API says afterwards
(results, a round trip's delivery confirmation). Each kind's server is
`testkit.campaigns.verdict_server`'s.
"""

import asyncio
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from testkit.campaigns.verdict_server import BOX, PASSWORD, SENDER, USER
from testkit.common import child_env

INTERVAL = 10  # the API's minimum
TIMEOUT = 4
TARPIT_TIMEOUT = INTERVAL  # a tarpit's check holds its slot the whole interval
OAUTH2_USER = "alice@example.com"  # the mailbox the token endpoint's tokens are for
# The token endpoint's client; its secret is PASSWORD, what `apply` gives every exported secret.
OAUTH2_CLIENT = "mailprobe-campaign"
PATHS = {
    "smtp": "/api/smtp-monitors",
    "imap": "/api/imap-pop-monitors",
    "pop3": "/api/imap-pop-monitors",
    "roundtrip": "/api/roundtrip-monitors",
}

# monitor name = server kind: (type, config); round trips' configs are made by `_roundtrip`
KINDS: dict[str, tuple[str, dict[str, object]]] = {
    "smtp": ("smtp", {"ignoreTls": True}),
    "smtp-starttls": ("smtp", {"requireTls": True}),
    "smtps": ("smtp", {"secure": True}),
    "smtp-auth": ("smtp", {"requireTls": True, "auth": {"user": USER, "pass": PASSWORD}}),
    "imap": ("imap", {"protocol": "imap"}),
    "imap-starttls": ("imap", {"protocol": "imap"}),
    "imaps": ("imap", {"protocol": "imap", "tls": True}),
    "imap-auth": ("imap", {"protocol": "imap", "tls": True, "user": USER, "password": PASSWORD}),
    "pop3": ("pop3", {"protocol": "pop3"}),
    "pop3s": ("pop3", {"protocol": "pop3", "tls": True}),
    "pop3-auth": ("pop3", {"protocol": "pop3", "tls": True, "user": USER, "password": PASSWORD}),
    "rt-imap": ("roundtrip", {"protocol": "imap"}),
    "rt-pop3": ("roundtrip", {"protocol": "pop3"}),
    # Dovecot's IMAPS with its OAuth2 passdb (behind testkit.campaigns.verdict_server's forwarder),
    # a token the controller gets from the loopback token endpoint by client credentials: `oauth2`
    "imap-oauth2": (
        "imap",
        {
            "protocol": "imap",
            "tls": True,
            "user": OAUTH2_USER,
            "tlsOptions": {"servername": "localhost"},
        },
    ),
}
OAUTH2 = frozenset({"imap-oauth2"})
# kinds that log in: a round's countries go one after another, LOGIN_SPACING_SECONDS apart
CREDENTIALED = frozenset({"smtp-auth", "imap-auth", "pop3-auth", "rt-imap", "rt-pop3"}) | OAUTH2
LEGGED = frozenset({"rt-imap", "rt-pop3"})  # a send side and a mailbox, each may go


def _roundtrip(protocol: object, host: str, ports: tuple[int, ...]) -> dict[str, object]:
    return {
        "send": {
            "hostname": host,
            "port": ports[0],
            "auth": {"user": SENDER, "pass": PASSWORD},
            "allowPlaintextAuth": True,
            "from": f"{SENDER}@mail.test",
        },
        "to": BOX,
        "receive": {
            "protocol": protocol,
            "hostname": host,
            "port": ports[1],
            "user": BOX,
            "password": PASSWORD,
            "allowPlaintextAuth": True,
        },
    }


def body(
    name: str,
    kind: str,
    customer: str,
    host: str,
    ports: tuple[int, ...],
    countries: tuple[str, ...],
    timeout: int = TIMEOUT,
    token_url: str = "",
) -> dict[str, Any]:
    """A monitor of `kind` at `host`; an OAuth2 kind gets its tokens from `token_url`."""
    mtype, config = KINDS[kind] if kind != "tarpit" else ("smtp", {"ignoreTls": True})
    if kind in OAUTH2:
        config = {**config, "oauth2": oauth2_grant(token_url)}
    out: dict[str, Any] = {
        "customerId": customer,
        "name": name,
        "checkInterval": INTERVAL,
        "timeoutSeconds": timeout,
        "allowedCheckCountryCodes": list(countries),
        "notificationEmail": "oncall@example.com",
    }
    if mtype == "roundtrip":
        out["config"] = _roundtrip(config["protocol"], host, ports)
    else:
        out |= {"hostname": host, "port": ports[0], "config": config}
    return out


def oauth2_grant(token_url: str) -> dict[str, object]:
    return {
        "mechanism": "XOAUTH2",
        "grant": "client_credentials",
        "provider": "custom",
        "tokenUrl": token_url,
        "clientId": OAUTH2_CLIENT,
        "clientSecret": PASSWORD,
        "scopes": ["mail"],
    }


@dataclass
class Owner:
    """An organization's owner: its token and customer, and the monitors it made (name →
    (type, public id))."""

    token: str
    customer: str = ""
    monitors: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.AsyncClient(base_url=url, timeout=30)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, owner: Owner, method: str, path: str, **kw: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=owner.auth, **kw)

    async def customer(self, owner: Owner, name: str) -> None:
        r = await self.call(owner, "POST", "/api/customers", json={"name": name})
        r.raise_for_status()
        owner.customer = r.json()["publicId"]

    async def create(self, owner: Owner, mtype: str, monitor: dict[str, Any]) -> str:
        r = await self.call(owner, "POST", PATHS[mtype], json=monitor)
        if r.status_code != 201:
            raise RuntimeError(f"creating {monitor['name']}: {r.status_code} {r.text}")
        public_id: str = r.json()["publicId"]
        owner.monitors[monitor["name"]] = (mtype, public_id)
        return public_id

    async def trigger(self, owner: Owner, name: str) -> int:
        mtype, public_id = owner.monitors[name]
        r = await self.call(owner, "POST", f"{PATHS[mtype]}/{public_id}/trigger-check")
        return r.status_code

    async def disable(self, owner: Owner, name: str) -> None:
        mtype, public_id = owner.monitors[name]
        path = f"{PATHS[mtype]}/{public_id}"
        r = await self.call(owner, "PATCH", path, json={"status": "disabled"})
        r.raise_for_status()

    async def results(self, owner: Owner, name: str) -> list[dict[str, Any]]:
        mtype, public_id = owner.monitors[name]
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            r = await self.call(
                owner,
                "GET",
                f"{PATHS[mtype]}/{public_id}/results",
                params={"perPage": 200, "page": page},
            )
            r.raise_for_status()
            found += r.json()["items"]
            if page * 200 >= r.json()["total"]:
                return found
            page += 1

    async def confirmed(self, owner: Owner) -> set[str]:
        """The round trips whose mailbox is confirmed."""
        out = set()
        for name, (mtype, public_id) in owner.monitors.items():
            if mtype == "roundtrip":
                r = await self.call(owner, "GET", f"{PATHS[mtype]}/{public_id}/delivery")
                r.raise_for_status()
                if r.json()["state"] == "confirmed":
                    out.add(name)
        return out

    # -- monitors as code ---------------------------------------------------------------------

    def _env(self, owner: Owner, text: str = "") -> dict[str, str]:
        secrets = {name: PASSWORD for name in re.findall(r"MAILPROBE_SECRET_\w+", text)}
        return child_env(MAILPROBE_TOKEN=owner.token, **secrets)

    async def export(self, owner: Owner) -> str:
        argv = [sys.executable, "-m", "controller", "export", "--customer", owner.customer]
        done = await asyncio.to_thread(
            subprocess.run,
            [*argv, "--api", self.url],
            env=self._env(owner),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"export: {done.returncode} {done.stderr}")
        return done.stdout

    async def apply(self, owner: Owner, text: str, file: Path) -> tuple[int, str]:
        """`apply -f` of `text`: its exit code and last line (the summary)."""
        await asyncio.to_thread(file.write_text, text)
        argv = [sys.executable, "-m", "controller", "apply", "-f", str(file), "--api", self.url]
        done = await asyncio.to_thread(
            subprocess.run,
            argv,
            env=self._env(owner, text),
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = (done.stdout + done.stderr).strip().splitlines()
        return done.returncode, lines[-1] if lines else ""


def with_timeout(text: str, name: str) -> tuple[str, int]:
    """The exported file `text` with monitor `name`'s timeout moved by a second (4 ↔ 5), and
    the new timeout."""
    spec = yaml.safe_load(text)
    for monitor in spec["monitors"]:
        if monitor["name"] == name:
            old = monitor.get("timeoutSeconds", TIMEOUT)
            monitor["timeoutSeconds"] = new = TIMEOUT + 1 if old == TIMEOUT else TIMEOUT
            return yaml.safe_dump(spec, sort_keys=False), new
    raise RuntimeError(f"{name} not in the export")


def first_results(
    results: list[dict[str, Any]], since: float, parse: Any
) -> dict[str, tuple[float, str]]:
    """Each country's first result of a round scheduled from `since` on: (stored at, status)."""
    first: dict[str, tuple[float, str]] = {}
    for r in sorted(results, key=lambda r: parse(r["storedAt"])):
        if parse(r["scheduledAt"]) >= since - 1 and r["country"] not in first:
            first[r["country"]] = (parse(r["storedAt"]), r["status"])
    return first


def outcome_counts(results: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((r["status"], r["errorKind"] or "") for r in results)


def private_key_file(path: Path, key: str) -> str:
    path.write_text(key + "\n")
    os.chmod(path, 0o600)
    return str(path)
