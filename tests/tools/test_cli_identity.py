"""The command-line tools find `make run` through `.run/` and send a token only to the
controller that proves it holds the run's instance key (the attacker's view: a stale `.run/`,
a port moved to where another program listens, a variable naming another server on this
machine). The impostor here is a plain HTTP server on loopback that records every header it
is sent and answers every path, the proof path with a made-up proof."""

import asyncio
import io
import json
import os
import secrets
import socket
import stat
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import pytest

from controller.__main__ import main as controller_main
from controller.access.instance_proof import CHALLENGE, holds, proof
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from testkit.serving import serve_app
from tests.api.test_cli import ROOT
from tests.conftest import Tenant
from tests.thread_output import captured
from tools import devrun

pytestmark = pytest.mark.breadth


class Impostor:
    """Whatever else listens on a port: answers everything (by default the proof path with a
    made-up proof), keeps every header it was sent."""

    def __init__(
        self, answer: Callable[[str], bytes] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.headers: list[dict[str, str]] = []
        seen = self.headers

        def made_up(path: str) -> bytes:
            return json.dumps({"proof": "0" * 64} if "proof" in path else []).encode()

        respond = answer or made_up

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(dict(self.headers))
                body = respond(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, port), Handler)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def tokens_seen(self) -> list[str]:
        return [h["Authorization"] for h in self.headers if "Authorization" in h]


@pytest.fixture
def impostor() -> Iterator[Impostor]:
    server = Impostor()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


KEY = secrets.token_hex(32)


@pytest.fixture(scope="module")
async def keyed_api(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The API served as `make run` serves it: with an INSTANCE_KEY, on its API_PORT."""
    port = embedded.free_port()
    keyed = settings.replace(instance_key=KEY, api_port=port)
    async with serve_app(create_app(keyed, pool), port) as url:
        yield url


def make_run(folder: Path, api: str, key: str, nats: str = "nats://127.0.0.1:1") -> Path:
    folder.mkdir(exist_ok=True)
    devrun.write_endpoints(folder, api, nats, key)
    return folder


def _in_process(args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
    """`python -m controller ARGS` in this process (in a thread of its own): its exit code and
    everything it printed."""
    said, saved = io.StringIO(), dict(os.environ)
    os.environ.update(env)
    try:
        with captured(said, said):  # the API served in this process logs meanwhile
            try:
                code = controller_main(list(args))
            except SystemExit as exc:
                if isinstance(exc.code, int):
                    code = exc.code
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return code, said.getvalue()


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    return await asyncio.to_thread(_in_process, args, env)


async def cli_process(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """The same as a process of its own, as a user runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", *args,
        cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def test_the_proof_is_an_hmac_of_the_challenge_address_and_port_under_the_key() -> None:
    challenge = secrets.token_hex(32)
    assert CHALLENGE.fullmatch(challenge)
    made = proof(KEY, challenge, "127.0.0.1", 8081)
    assert holds(KEY, challenge, "127.0.0.1", 8081, made)
    assert holds(KEY, challenge, "::ffff:127.0.0.1", 8081, made)  # the same address
    assert not holds(secrets.token_hex(32), challenge, "127.0.0.1", 8081, made)
    assert not holds(KEY, secrets.token_hex(32), "127.0.0.1", 8081, made)
    assert not holds(KEY, challenge, "127.0.0.1", 8080, made)
    for elsewhere in ("127.0.0.2", "::1", "localhost"):
        assert not holds(KEY, challenge, elsewhere, 8081, made), elsewhere


@pytest.mark.parametrize("named", [None, "localhost"])
async def test_the_run_s_own_controller_gets_the_token(
    keyed_api: str, tenant: Tenant, tmp_path: Path, named: str | None
) -> None:
    """From `.run/`, or named `localhost` (pinned to the address that answers, and proved)."""
    run = make_run(tmp_path / "run", keyed_api, KEY)
    env = {"MAILPROBE_RUN_DIR": str(run), "MAILPROBE_TOKEN": tenant.tokens["admin"]}
    if named:
        env["MAILPROBE_API"] = keyed_api.replace("127.0.0.1", named)
    code, said = await cli("export", "--customer", tenant.customer_public_id, env=env)
    assert code == 0, said
    assert "monitors:" in said


async def test_the_served_proof_path_answers_only_a_sane_challenge(keyed_api: str) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=keyed_api) as client:
        challenge = secrets.token_hex(32)
        r = await client.get("/instance-proof", params={"challenge": challenge})
        port = int(keyed_api.rsplit(":", 1)[1])
        assert r.status_code == 200 and holds(KEY, challenge, "127.0.0.1", port, r.json()["proof"])
        for bad in ("", "zz" * 32, "ab", "a" * 129):
            r = await client.get("/instance-proof", params={"challenge": bad})
            assert r.status_code == 400, bad


@pytest.mark.parametrize("named", [False, True])
async def test_a_stale_run_or_a_moved_port_never_gets_the_token(
    impostor: Impostor, tenant: Tenant, tmp_path: Path, named: bool
) -> None:
    """`.run/` (or MAILPROBE_API, naming a port on this machine) points at another program:
    it is asked for the proof without a token, cannot give it, and the command stops."""
    run = make_run(tmp_path / "run", "http://127.0.0.1:1" if named else impostor.url, KEY)
    env = {"MAILPROBE_RUN_DIR": str(run), "MAILPROBE_TOKEN": tenant.tokens["admin"]}
    if named:
        env["MAILPROBE_API"] = impostor.url
    code, said = await cli_process("export", "--customer", "1", env=env)
    assert code != 0
    assert "the token was not sent" in said and "make run" in said
    assert len(impostor.headers) == 1  # the challenge, and nothing after it
    assert impostor.tokens_seen() == []
    assert tenant.tokens["admin"] not in said


async def test_a_run_s_key_proves_nothing_for_another_run(
    keyed_api: str, tenant: Tenant, tmp_path: Path
) -> None:
    """A `.run/` left by an earlier run (another key) refuses even the real controller."""
    run = make_run(tmp_path / "run", keyed_api, secrets.token_hex(32))
    env = {"MAILPROBE_RUN_DIR": str(run), "MAILPROBE_TOKEN": tenant.tokens["admin"]}
    code, said = await cli("export", "--customer", tenant.customer_public_id, env=env)
    assert code != 0 and "the token was not sent" in said


async def test_with_no_run_and_no_api_named_nothing_is_sent(tmp_path: Path) -> None:
    env = {"MAILPROBE_RUN_DIR": str(tmp_path / "none"), "MAILPROBE_TOKEN": "mp_secret"}
    code, said = await cli("export", "--customer", "1", env=env)
    assert code == 2
    assert "no API named" in said and "MAILPROBE_API" in said


async def test_tail_reads_the_runs_nats_and_a_name_lookup_proves_the_api_first(
    impostor: Impostor, nats_url: str, tmp_path: Path
) -> None:
    """`tail` without --nats follows the NATS `make run` wrote; `--monitor NAME` asks the API,
    which must prove itself before the token goes."""
    run = make_run(tmp_path / "run", impostor.url, KEY, nats=nats_url)
    env = {"MAILPROBE_RUN_DIR": str(run), "MAILPROBE_TOKEN": "mp_secret", "NATS_URL": ""}
    code, said = await cli("tail", "--monitor", "Relay", env=env)
    assert code != 0 and "the token was not sent" in said
    assert impostor.tokens_seen() == []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", "tail",
        cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert f"on {nats_url.split(',')[0]}" in line.decode(), line
    finally:
        proc.kill()
        await proc.wait()


def test_the_run_files_are_private_hold_no_password_and_go_at_exit(tmp_path: Path) -> None:
    nats = "nats://u:secret@127.0.0.1:4222,tls://127.0.0.1:4223"
    run = make_run(tmp_path / "run", "http://127.0.0.1:8081", KEY, nats=nats)
    for name in ("endpoints.json", "instance.key"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o600, name
    found = json.loads((run / "endpoints.json").read_text())
    assert found == {
        "api": "http://127.0.0.1:8081",
        "nats": "nats://127.0.0.1:4222,tls://127.0.0.1:4223",
    }
    devrun.remove_endpoints(run)
    assert list(run.iterdir()) == []


def test_a_busy_port_that_was_asked_for_names_its_setting() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(devrun.PortBusy, match=f"port {taken} \\(API_PORT={taken}\\)"):
            devrun.chosen_port({"API_PORT": str(taken)}, "API_PORT", 8080)
        with pytest.raises(devrun.PortBusy, match="AGENT_METRICS_PORT"):
            devrun.chosen_port(
                {"AGENT_METRICS_PORT": str(taken - 1)}, "AGENT_METRICS_PORT", 9464, 1
            )
        # Not asked for: a busy default moves to a free port.
        assert devrun.chosen_port({}, "API_PORT", taken) != taken
    assert devrun.chosen_port({"AGENT_METRICS_PORT": "0"}, "AGENT_METRICS_PORT", 9464, 3) == 0


def relayed_to(real: str) -> Callable[[str], bytes]:
    """What a program on another port answers when it passes each request on to the real
    controller and hands back its answer."""

    def answer(path: str) -> bytes:
        with urllib.request.urlopen(real + path, timeout=5) as response:
            return response.read()  # type: ignore[no-any-return]

    return answer


async def test_a_program_relaying_the_challenge_to_the_real_controller_gets_no_token(
    keyed_api: str, tenant: Tenant, tmp_path: Path
) -> None:
    """MAILPROBE_API names a port where another program listens, which asks the real
    controller for the proof: the proof is for the controller's own port, and refused."""
    relay = Impostor(relayed_to(keyed_api))
    try:
        run = make_run(tmp_path / "run", keyed_api, KEY)
        env = {
            "MAILPROBE_RUN_DIR": str(run),
            "MAILPROBE_TOKEN": tenant.tokens["admin"],
            "MAILPROBE_API": relay.url,
        }
        code, said = await cli("export", "--customer", tenant.customer_public_id, env=env)
    finally:
        relay.server.shutdown()
        relay.server.server_close()
    assert code != 0 and "the token was not sent" in said
    assert len(relay.headers) == 1 and relay.tokens_seen() == []


async def test_an_api_that_does_not_answer_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{embedded.free_port()}"
    env = {"MAILPROBE_RUN_DIR": str(tmp_path / "none"), "MAILPROBE_TOKEN": "mp_secret"}
    code, said = await cli("export", "--customer", "1", "--api", closed, env=env)
    assert code == 1 and f"error: cannot reach the API at {closed}" in said
    assert "Traceback" not in said


@pytest.mark.parametrize("body", [b"[]", b"not json", b'{"proof": 7}', b"{}"])
async def test_any_other_answer_to_the_challenge_is_refused_cleanly(
    tmp_path: Path, body: bytes
) -> None:
    other = Impostor(lambda _: body)
    try:
        run = make_run(tmp_path / "run", other.url, KEY)
        env = {"MAILPROBE_RUN_DIR": str(run), "MAILPROBE_TOKEN": "mp_secret"}
        code, said = await cli("export", "--customer", "1", env=env)
    finally:
        other.server.shutdown()
        other.server.server_close()
    assert code != 0 and "the token was not sent" in said and "Traceback" not in said
    assert other.tokens_seen() == []


@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
async def test_a_relay_on_the_controller_s_port_at_another_address_gets_no_token(
    keyed_api: str, tenant: Tenant, tmp_path: Path, host: str
) -> None:
    """Another program on the controller's port at another loopback address (what `localhost`
    may name first), relaying the challenge to the real controller: the proof is for the
    address the controller was reached at, and refused."""
    port = int(keyed_api.rsplit(":", 1)[1])
    relay = Impostor(relayed_to(keyed_api), host, port)
    try:
        run = make_run(tmp_path / "run", keyed_api, KEY)
        env = {
            "MAILPROBE_RUN_DIR": str(run),
            "MAILPROBE_TOKEN": tenant.tokens["admin"],
            "MAILPROBE_API": relay.url,
        }
        code, said = await cli("export", "--customer", tenant.customer_public_id, env=env)
    finally:
        relay.server.shutdown()
        relay.server.server_close()
    assert code != 0 and "the token was not sent" in said, said
    assert len(relay.headers) == 1 and relay.tokens_seen() == []
