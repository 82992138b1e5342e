"""A port another program holds is reported naming the setting that moves it: the API's
(API_PORT, which stops the controller) and the metrics ports (AGENT_METRICS_PORT,
CONTROLLER_METRICS_PORT, which do not stop the process)."""

import asyncio
import errno
import socket
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from controller.runtime.serve import _serve_api
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import ops


@pytest.mark.parametrize("setting", ["AGENT_METRICS_PORT", "CONTROLLER_METRICS_PORT"])
async def test_a_taken_metrics_port_names_its_setting(setting: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with capture_logs() as logs:
            assert await ops.start("127.0.0.1", port, lambda: None, setting=setting) is None
    [line] = [entry for entry in logs if entry["event"] == "ops_port_taken"]
    assert line["setting"] == setting and f"set {setting} to a free port" in line["hint"]


async def test_a_taken_api_port_stops_the_controller_naming_api_port(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        held = settings.replace(api_host="127.0.0.1", api_port=port)
        with capture_logs() as logs, pytest.raises(SystemExit):
            await _serve_api(held.api, create_app(held, pool), asyncio.Event())
    [line] = [entry for entry in logs if entry.get("setting") == "API_PORT"]
    assert line["port"] == port and "set API_PORT" in line["event"]


async def test_a_port_held_for_a_moment_by_no_listener_is_had_on_the_second_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bind without SO_REUSEADDR (a port probe) refuses every other bind while it lasts; one
    released right after the ops server's first try leaves the port to it, not to nobody. The
    first try really meets the probe: the probe is closed only once that try was refused."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    create = socket.create_server
    refused: list[int] = []

    def refused_then_freed(*args: Any, **kwargs: Any) -> socket.socket:
        try:
            return create(*args, **kwargs)
        except OSError as exc:
            refused.append(exc.errno or 0)
            probe.close()
            raise

    monkeypatch.setattr(socket, "create_server", refused_then_freed)
    server = await ops.start("127.0.0.1", port, lambda: None)
    assert refused == [errno.EADDRINUSE], refused
    assert server is not None, "a port free again was not tried again"
    server.close()
    await server.wait_closed()
