"""The README's walkthrough, its commands run by bash as written, against `make run`
(tools/devrun.py) on a host where other programs hold every default port (8080, 4222, 2525,
8025, 9464): each step reaches this run, not the program on the default port, and answers as the
README says; a restart keeps every port, so `.run/env` stays right and the sink's monitor is up
again.

Only the README's monitors of loopback servers are created here: its example.com requests
would send this run's agents to resolve names beyond loopback (tests/api/test_walkthrough.py
checks each of those requests against a controller without agents)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared import embedded
from tests.api.test_cli import ROOT
from tests.conftest import scratch_database
from tools import devrun

pytestmark = [pytest.mark.breadth, pytest.mark.slow]

README = (ROOT / "README.md").read_text()
BLOCKS: list[str] = re.findall(r"```sh\n(.*?)```", README, re.S)
# Ports a default `make run` listens on; here another program holds each.
HTTP_DEFAULTS = (8080, 8025)
OTHER_DEFAULTS = (4222, 2525, 9464)
IMPOSTOR = b'{"message": "the token is unknown, expired or revoked"}'
START_S = 240  # a start on a loaded 2-core host: NATS, one agent, migrations, the controller


def block(marker: str) -> str:
    """The README's one shell block holding `marker`."""
    [found] = [b for b in BLOCKS if marker in b]
    return found


def inline(marker: str) -> str:
    """The README's one inline command holding `marker`, its line breaks as spaces."""
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    [found] = [c for c in re.findall(r"`([^`]+)`", prose) if marker in c]
    return " ".join(found.split())


class _Impostor(BaseHTTPRequestHandler):
    """Another program on a default port, answering as the issue's did."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(IMPOSTOR)))
        self.end_headers()
        self.wfile.write(IMPOSTOR)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def defaults_held() -> Iterator[None]:
    """Every default port held by a listener of this test (one another program holds already
    is held all the same)."""
    with ExitStack() as stack:
        for port in HTTP_DEFAULTS:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", port), _Impostor)
            except OSError:
                continue
            threading.Thread(target=server.serve_forever, daemon=True).start()
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        for port in OTHER_DEFAULTS:
            holder = stack.enter_context(socket.socket())
            try:
                holder.bind(("127.0.0.1", port))
                holder.listen()
            except OSError:
                continue
        assert not any(embedded.port_is_free(p) for p in (*HTTP_DEFAULTS, *OTHER_DEFAULTS))
        yield


def _clean_env() -> dict[str, str]:
    """This environment without the settings a user's shell would not have set."""
    dropped = ("API_PORT", "NATS_URL", "DATABASE_URL", "AGENT_METRICS_PORT", "DEV_NATS_NODES")
    return {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not k.startswith(("NOTIFY_", "MAILPROBE_", "PYTEST_"))
    }


class Run:
    """`make run` in `work/.run`, its output in `work/run.log`."""

    def __init__(self, work: Path, database_url: str) -> None:
        self.work = work
        self.log = work / "run.log"
        self.env = {
            **_clean_env(),
            "MAILPROBE_RUN_DIR": str(work / ".run"),
            "DATABASE_URL": database_url,
            "DEV_COUNTRIES": "DE",
            # Mail DNS probes ask a loopback port nothing answers: nothing leaves loopback.
            "AGENT_DNS_RESOLVER": f"127.0.0.1:{embedded.free_port()}",
            "PYTHONPATH": str(ROOT),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start it; return its output up to the banner."""
        self.log.write_bytes(b"")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "tools/devrun.py"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            said = self.log.read_text(errors="replace")
            if "mailprobe is running" in said and "Logs: WARNING" in said:
                return said
            if self.proc.poll() is not None:
                raise AssertionError(f"make run exited ({self.proc.returncode}):\n{said}")
            time.sleep(0.5)
        raise AssertionError(f"no banner within {START_S} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """As a Ctrl-C would (SIGTERM: the same path); what it may leave is stopped after."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        devrun.stop_leftovers(self.work / ".run")

    def shell(self, command: str, timeout: float = 60) -> str:
        """`command` run by bash in the work directory after the README's first step."""
        script = block("source .run/env") + command
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.work,
            env={**_clean_env(), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout


def _first_up(run: Run, command: str, within: float = 120, nudge: str = "") -> str:
    """The first line of `command` (the README's `tail`) saying the sink's monitor is up;
    `nudge` (a shell command asking for a round now) is run a few times meanwhile, as the tail
    sees only results published once it has subscribed."""
    with subprocess.Popen(
        ["bash", "-c", block("source .run/env") + command],
        cwd=run.work,
        env={**_clean_env(), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as tail:
        timer = threading.Timer(within, os.killpg, (tail.pid, signal.SIGTERM))
        timer.start()
        seen = threading.Event()
        nudging = threading.Thread(target=_nudge, args=(run, nudge, seen), daemon=True)
        if nudge:
            nudging.start()
        try:
            assert tail.stdout is not None
            for line in tail.stdout:
                if '"Alert sink" up' in line:
                    return line
            raise AssertionError(f"no up line within {within} s: {tail.stderr}")
        finally:
            seen.set()
            if nudge:
                nudging.join()  # its command done while this run still answers
            timer.cancel()
            os.killpg(tail.pid, signal.SIGTERM)


def _trigger(public_id: str) -> str:
    """The shell command asking for a round of the SMTP monitor `public_id` now."""
    return (
        f'curl -s -X POST "$API/api/smtp-monitors/{public_id}/trigger-check"'
        ' -H "Authorization: Bearer $TOKEN"'
    )


def _nudge(run: Run, command: str, seen: threading.Event) -> None:
    """`command` 1, 3 and 6 s on until `seen` (within TRIGGER_CHECK_BURST, 3: no 429): the first
    sends may come before the tail has subscribed."""
    for wait in (1.0, 2.0, 3.0):
        if seen.wait(wait):
            return
        run.shell(command)


@pytest.mark.timeout(2 * START_S + 300)
async def test_the_walkthrough_as_written_with_every_default_port_taken(
    database_url: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / ".run").mkdir(parents=True)
    for shared in (".venv", "docs"):
        (work / shared).symlink_to(ROOT / shared)
    async with scratch_database(database_url, "mailprobe_readme") as url:
        run = Run(work, url)
        with defaults_held():
            try:
                banner = run.start()
                _walk(run, banner)
                first_env = (work / ".run" / "env").read_text()
                first_ports = json.loads((work / ".run" / "ports.json").read_text())
                run.stop()
                again = run.start()
                assert "moved to" not in again, again
                assert (work / ".run" / "env").read_text() == first_env
                assert json.loads((work / ".run" / "ports.json").read_text()) == first_ports
                listed = json.loads(
                    run.shell('curl -s "$API/api/smtp-monitors" -H "Authorization: Bearer $TOKEN"')
                )
                [sink] = [m for m in listed["items"] if m["name"] == "Alert sink"]
                assert sink["port"] == first_ports["alert sink SMTP"]
                # The same monitor, unchanged, is up again after the restart (its sink kept
                # its port): the README's command as written, in a shell sourced before it. A
                # round asked for now, not the next of its 60 s grid.
                command = inline('tail --monitor "Alert sink"')
                _first_up(run, command, nudge=_trigger(sink["publicId"]))
            finally:
                run.stop()


def _walk(run: Run, banner: str) -> None:
    """Each step of the README, as written, answered by this run."""
    # Step 1: the addresses are this run's, none on a default port.
    api, console, sink, sink_smtp = (
        run.shell('echo "$API|$CONSOLE|$SINK|$SINK_SMTP_PORT"').strip().split("|")
    )
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", api) and not api.endswith(":8080")
    assert f"console    {api}/console/" in banner and console == f"{api}/console/"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sink) and not sink.endswith(":8025")
    assert sink_smtp.isdigit() and sink_smtp != "2525"
    # Step 2: the first customer, id 1.
    customer = json.loads(run.shell(block('"name": "Me"')))
    assert customer["id"] == 1, customer
    # Step 3: the alert sink's monitor, on the sink's port.
    made = json.loads(run.shell(block('"name": "Alert sink"')))
    assert (made["hostname"], made["port"]) == ("127.0.0.1", int(sink_smtp)), made
    # Step 4: tail by name shows it up, by its name (its publicId only with --ids). Its first
    # round may come before the tail has subscribed: a round asked for now, not the next of
    # its 60 s grid.
    line = _first_up(run, inline('tail --monitor "Alert sink"'), nudge=_trigger(made["publicId"]))
    assert ' smtp "Alert sink" up' in line and made["publicId"] not in line, line
    # Step 5: the sink's page lists what it caught (JSON).
    caught = json.loads(run.shell(inline('curl -s "$SINK/"')))
    assert isinstance(caught["messages"], list)
    # Step 6: the example file, a dry run.
    out = run.shell(inline("apply -f docs/examples/monitors.yaml --dry-run"), timeout=120)
    assert out.splitlines()[-1].endswith(
        "5 to create, 0 to update, 0 to delete (dry run: nothing changed)"
    ), out
    # Step 7: $CONSOLE is this run's console, which asks for the admin's login first.
    page = run.shell('curl -s -L -w "\n%{http_code} %{url_effective}" "$CONSOLE"')
    body, _, answer = page.rpartition("\n")
    assert answer == f"200 {console}login", answer
    assert "password" in body.lower()
