"""A port another program holds is reported naming the setting that moves it: the API's
(API_PORT, which stops the controller) and the metrics ports (AGENT_METRICS_PORT,
CONTROLLER_METRICS_PORT, which do not stop the process)."""

import asyncio
import socket

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
