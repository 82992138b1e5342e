"""A stored secret is bound to where it is sent: which changes need the secret sent again.

Responses mask a monitor's password, yet anyone who may change the monitor could otherwise move
it to a server of their own, or loosen its TLS, or pair the password with another user name,
send the mask back ("keep the stored secret") and have the next check hand the password over;
or, for a round trip, make the send leg's relay account mail the probe to a recipient (or from
a sender) of their choosing.
So a change of anything deciding where, how or as whom the secret travels is allowed only when
the same request carries the secret again (a fresh value, not the mask).

Pure: two views of a monitor in, the names of the fields that moved its kept secret out.
Values are compared as the agent would use them (defaults applied), so restating a stored
value, or spelling out a default, is no change.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from controller.monitors import kinds
from shared.messages import MONITOR_TYPES, ImapPopConfig, MonitorType, SmtpConfig, default_port

# The config keys each secret is bound to are declared with its kind's login (`Login.bound`,
# `Login.also`).


@dataclass(frozen=True)
class Target:
    """A monitor as its secret sees it: type, address and config (secrets sealed)."""

    type: MonitorType
    hostname: str
    port: int | None
    config: Mapping[str, object]

    @classmethod
    def of(cls, values: Mapping[str, object]) -> "Target":
        """From a monitor row, or anything with its `type`, `hostname`, `port`, `config`."""
        monitor_type, hostname, port = values["type"], values["hostname"], values["port"]
        config = values["config"] or {}
        if not (
            monitor_type in MONITOR_TYPES
            and isinstance(hostname, str)
            and (port is None or isinstance(port, int))
            and isinstance(config, Mapping)
        ):
            raise ValueError("not a monitor's type, hostname, port and config")
        return cls(cast(MonitorType, monitor_type), hostname, port, config)


def _at(config: Mapping[str, object], path: str) -> object:
    value: object = config
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _stored(target: Target, path: str) -> str | None:
    value = _at(target.config, path)
    return value if isinstance(value, str) and value else None


def secret(target: Target) -> str | None:
    """The target's (first) stored secret (sealed), or None when it has none."""
    return _stored(target, kinds.of_type(target.type).secrets[0])


def _leg(target: Target, path: str) -> tuple[str, str, int | None, Mapping[str, object]]:
    """(protocol, hostname, port, config) of the connection the secret at `path` travels on."""
    if target.type != "roundtrip":
        return target.type, target.hostname, target.port, target.config
    if path.startswith("send."):
        send = _at(target.config, "send")
        return "smtp", target.hostname, target.port, send if isinstance(send, Mapping) else {}
    receive = _at(target.config, "receive")
    leg = receive if isinstance(receive, Mapping) else {}
    port = leg.get("port")
    protocol = leg.get("protocol") or "imap"
    return (
        str(protocol),
        str(leg.get("hostname") or ""),
        port if isinstance(port, int) else None,
        leg,
    )


def _binding(target: Target, path: str) -> dict[str, object]:
    """What the secret at `path` is bound to, as the agent will use it; the names are where
    the request spells them (`receive.hostname` for a round trip's mailbox)."""
    protocol, hostname, port, config = _leg(target, path)
    prefix = "receive." if target.type == "roundtrip" and not path.startswith("send.") else ""
    send = "send." if target.type == "roundtrip" and path.startswith("send.") else ""
    login = kinds.of_type(target.type).login_of(path)
    out: dict[str, object] = {
        f"{prefix}{'protocol' if prefix else 'type'}": protocol,
        f"{prefix}hostname": hostname,
        f"{prefix}port": _port(protocol, port, config),
    }
    for key, default in login.bound.items():
        value = _at(config, key)
        out[f"{prefix}{send}{key}"] = default if value is None else value
    # A round trip's send password also decides whom the probe mail goes to and as whom: with
    # only the mask, a member could make the owner's relay account mail an address of their
    # choosing.
    for also in login.also:
        out[also] = _at(target.config, also)
    # Every TLS option binds the secret, also ones added after this rule was written (a CA, a
    # server name): they all decide whom the agent accepts as the server.
    options = _at(config, "tlsOptions")
    if isinstance(options, Mapping):
        for key, value in options.items():
            out.setdefault(f"{prefix}{send}tlsOptions.{key}", value)
    return out


def _port(protocol: str, port: int | None, config: Mapping[str, object]) -> int:
    """The port the agent connects to: a `null` port is the protocol's default for its TLS."""
    if port is not None:
        return port
    if protocol == "smtp":
        return default_port("smtp", SmtpConfig(secure=_at(config, "secure") is True))
    tls = ImapPopConfig(tls=_at(config, "tls") is True)
    return default_port(cast(MonitorType, protocol), tls)


def moved_each(before: Target, after: Target) -> dict[str, list[str]]:
    """For each secret `after` keeps from `before`, the fields that changed where it goes;
    only secrets so moved are listed. A secret is allowed to move when the request sent it
    (a new one seals to a new value; the mask keeps the stored one, unchanged)."""
    out: dict[str, list[str]] = {}
    # Where the secrets sit is the kind's (a round trip has two, each bound to its own leg:
    # changing the send server needs the send password, the mailbox's the mailbox password).
    # An OAuth2 grant's secrets are bound to their login's leg as its password is, and to
    # the grant's token endpoint, client, scopes and subject too: the access token they get
    # goes to that mailbox, and they go to that endpoint.
    for login in kinds.of_type(before.type).logins:
        for path in (login.secret, *login.grant_secrets):
            kept = _stored(before, path)
            if kept is None or _stored(after, path) != kept:
                continue
            old, new = _binding(before, login.secret), _binding(after, login.secret)
            if path != login.secret:
                old.update(_grant_binding(before, login.oauth2))
                new.update(_grant_binding(after, login.oauth2))
            if fields := [name for name in {**old, **new} if new.get(name) != old.get(name)]:
                out[path] = fields
    return out


# What a grant's secrets are bound to besides their leg (defaults as
# controller.monitors.oauth2_grants).
GRANT_BINDING: dict[str, object] = {
    "mechanism": "XOAUTH2",
    "grant": "client_credentials",
    "provider": "custom",
    "tenant": "",
    "tokenUrl": "",
    "clientId": "",
    "scopes": [],
    "subject": "",
}


def _grant_binding(target: Target, path: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, default in GRANT_BINDING.items():
        value = _at(target.config, f"{path}.{key}")
        out[f"{path}.{key}"] = default if value is None else value
    return out


def moved(before: Target, after: Target) -> list[str]:
    """The fields that changed where `before`'s secrets go while `after` keeps them; [] when
    the change is allowed (nothing they are bound to changed, no secret was stored, or the
    request sent them again)."""
    return [name for fields in moved_each(before, after).values() for name in fields]
