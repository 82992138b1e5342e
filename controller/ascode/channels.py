"""A channels file (YAML): the organization's notification channels, for `apply` and `export`.

    channels:
      - name: On-call pager          # a channel's identity within the organization
        kind: pagerduty
        secret: {env: MAILPROBE_SECRET_PAGERDUTY}
        customerIds: [3]             # the customers whose monitors use it by default
      - name: Ops chat
        kind: slack
        url: {env: MAILPROBE_SECRET_SLACK_URL}
        monitorIds: [3f0c6d1e-...]   # monitors that chose it

Every key is the API's create body (docs/api.md, "Notification channels"). A secret (`secret`,
and the `url` of Slack and Teams, which is their credential) is never in the file: it is
`{env: NAME}` with NAME `MAILPROBE_SECRET_<NAME>`, as in monitors files. The API never shows a
secret, so `apply` sends every secret on every run; `monitorIds` and `customerIds` not given
mean none. A channel's kind does not change: delete it and create another.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import yaml

from controller.ascode import secret_env, yaml_text
from controller.ascode.spec import Problem, SpecError, YamlLines
from controller.notify import apprise_channel
from controller.notify.channel_kinds import SECRET_URL
from controller.notify.channel_shown import shown_url
from controller.web.api.channels import ChannelCreate

PATH = "/api/notification-channels"
PER_PAGE = 200
_SHOWN = ("url", "chatId", "monitorIds", "customerIds")  # what the API shows back to compare


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    body: dict[str, Any]  # the API's create body, secrets read from the environment
    line: int


def is_channels_file(text: str) -> bool:
    """Whether `text` is a channels file (a mapping with `channels`), not a monitors file."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "channels" in data


def load(text: str, file: str, env: Mapping[str, str]) -> list[Channel]:
    """The file's channels, checked with the API's own request Struct; SpecError listing every
    problem at its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"{file}:1: not valid YAML: {exc}"]) from None
    if node is None or not isinstance(data, dict):
        raise SpecError([f"{file}:1: expected a mapping with `channels`"])
    lines = YamlLines(node)
    problems: list[str] = []
    for key in sorted(set(data) - {"channels"}, key=str):
        problems.append(f"{file}:{lines.of((key,))}: {key}: unknown key (expected channels)")
    items = data.get("channels") or []
    if not isinstance(items, list):
        raise SpecError([f"{file}:{lines.of(('channels',))}: channels: expected a list"])
    found: list[Channel] = []
    names: dict[str, int] = {}
    for i, item in enumerate(items):
        at = ("channels", i)
        try:
            channel = _channel(item, env, lines.of(at))
        except Problem as exc:
            problems.append(f"{file}:{lines.of((*at, *exc.path))}: {exc.message}")
            continue
        if channel.name in names:
            problems.append(
                f"{file}:{lines.of((*at, 'name'))}: name: {channel.name!r} is also the channel"
                f" on line {names[channel.name]}; names identify channels"
            )
            continue
        names[channel.name] = channel.line
        found.append(channel)
    if problems:
        raise SpecError(problems)
    return found


def _channel(item: object, env: Mapping[str, str], line: int) -> Channel:
    if not isinstance(item, dict):
        raise Problem((), "expected a mapping with name and kind")
    body = dict(item)
    if body.get("kind") in SECRET_URL and isinstance(body.get("url"), str):
        raise Problem(("url",), f"url: a {body['kind']} URL is its credential; write {{env: NAME}}")
    if isinstance(body.get("url"), dict):
        body["url"] = _from_env(body["url"], "url", env)
    if body.get("secret") is not None:
        body["secret"] = _from_env(body["secret"], "secret", env)
    try:
        checked = msgspec.convert(body, ChannelCreate, strict=True)
    except msgspec.ValidationError as exc:
        said = str(exc)
        field = said.rsplit("at `$.", 1)[-1].split("`")[0].split(".")[0] if "$." in said else ""
        raise Problem((field,) if field else (), said) from None
    return Channel(checked.name, checked.kind, body, line)


def _from_env(ref: object, field: str, env: Mapping[str, str]) -> str:
    """A secret `{env: NAME}` read from MAILPROBE_SECRET_NAME, by the monitors files' rules."""
    if not (isinstance(ref, dict) and set(ref) == {"env"} and isinstance(ref["env"], str)):
        raise Problem(
            (field,),
            f"{field}: secrets are not kept in the file; write {{env: NAME}} and set NAME in"
            " the environment",
        )
    name = ref["env"]
    if why := secret_env.refusal(name):
        raise Problem((field, "env"), f"{field}: {why}")
    value = env.get(name)
    if value and secret_env.holds_the_token(value, env):
        raise Problem(
            (field, "env"),
            f"{field}: {name} holds the API token ({secret_env.TOKEN_ENV}), which is never sent"
            " as a secret",
        )
    if not value:
        raise Problem((field, "env"), f"{field}: environment variable {name} is not set")
    return value


async def current(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        r = await client.get(PATH, params={"page": page, "perPage": PER_PAGE})
        if r.status_code != 200:
            raise SpecError([f"listing {PATH}: HTTP {r.status_code}"])
        body = r.json()
        found += body["items"]
        if page * PER_PAGE >= body["total"]:
            return found
        page += 1


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json()["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code}"


async def apply(
    channels: list[Channel],
    file: str,
    client: httpx.AsyncClient,
    *,
    prune: bool,
    dry_run: bool,
    say: Callable[[str], None],
) -> int:
    """Make the organization's channels the file's; 0 when done (or planned), 1 when the API
    refused something (the rest is still applied)."""
    existing = {c["name"]: c for c in await current(client)}
    failed = 0
    counts = {"create": 0, "update": 0, "delete": 0}
    for want in channels:
        have = existing.get(want.name)
        if have is not None and have["kind"] != want.kind:
            say(
                f"{file}:{want.line}: {want.name}: is a {have['kind']} channel; a kind does not"
                " change (delete it, or give the new one another name)"
            )
            failed += 1
            continue
        if have is None:
            verb, request = "create", ("POST", PATH, want.body)
        else:
            body = {k: v for k, v in want.body.items() if k != "kind"}
            body.setdefault("monitorIds", [])
            body.setdefault("customerIds", [])
            changed = any(
                k in body and _shown(want.kind, k, body[k]) != have.get(k) for k in _SHOWN
            )
            verb = "update" if changed else "keep"
            request = ("PATCH", f"{PATH}/{have['id']}", body)
        counts[verb] = counts.get(verb, 0) + 1
        say(f"{verb} channel {want.name!r} ({want.kind})")
        if dry_run:
            continue
        method, path, payload = request
        r = await client.request(method, path, json=payload)
        if not r.is_success:
            say(f"  {file}:{want.line}: the API refused it (HTTP {r.status_code}): {_message(r)}")
            failed += 1
    if prune:
        wanted = {c.name for c in channels}
        for name, have in existing.items():
            if name in wanted:
                continue
            counts["delete"] += 1
            say(f"delete channel {name!r} ({have['kind']})")
            if not dry_run:
                r = await client.delete(f"{PATH}/{have['id']}")
                if not r.is_success:
                    say(f"  {name}: the API refused it (HTTP {r.status_code}): {_message(r)}")
                    failed += 1
    summary = ", ".join(
        f"{counts[v]} to {v}" if dry_run else f"{counts[v]} {v}d"
        for v in ("create", "update", "delete")
    )
    say(f"{file}: {summary}" + (" (dry run: nothing changed)" if dry_run else ""))
    return 1 if failed else 0


def _shown(kind: str, key: str, value: object) -> object:
    """The file's `value` of `key` as the API would show it back: a URL as the channel shows
    it (masked when it may hold a token), so a masked one compares equal to its own export."""
    if key != "url" or not isinstance(value, str):
        return value
    return apprise_channel.shown(value) if kind == "apprise" else shown_url(kind, value)


def _env_name(channel: str, what: str) -> str:
    return secret_env.export_name(channel, what)


def export(items: list[dict[str, Any]]) -> dict[str, object]:
    """The organization's channels as a channels file; secrets as `{env: NAME}` to set."""
    out = []
    for c in items:
        doc: dict[str, object] = {"name": c["name"], "kind": c["kind"]}
        if c["kind"] in SECRET_URL:
            doc["url"] = {"env": _env_name(c["name"], "URL")}
        else:
            doc["url"] = c["url"]
        if c.get("secret"):
            doc["secret"] = {"env": _env_name(c["name"], "SECRET")}
        if c.get("chatId"):
            doc["chatId"] = c["chatId"]
        if c["monitorIds"]:
            doc["monitorIds"] = c["monitorIds"]
        if c["customerIds"]:
            doc["customerIds"] = c["customerIds"]
        out.append(doc)
    return {"channels": out}


def export_text(items: list[dict[str, Any]]) -> str:
    return yaml_text.dump(export(items))
