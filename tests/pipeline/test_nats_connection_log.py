"""The controller's NATS connection logs a warning for a lost server, not for its own close:
every clean shutdown (`make run`'s Ctrl-C, a rolling restart) drains the connection, which the
client reports as a disconnect too."""

import asyncio
from pathlib import Path

from structlog.testing import capture_logs
from structlog.typing import EventDict

from controller.runtime.pipeline import connect_nats
from shared import embedded


def _events(logs: list[EventDict], level: str) -> list[object]:
    return [entry["event"] for entry in logs if entry["log_level"] == level]


async def test_a_drained_connection_warns_of_nothing(tmp_path: Path) -> None:
    server, url = embedded.start_nats(tmp_path / "nats")
    try:
        with capture_logs() as logs:
            nc = await connect_nats(url)
            await nc.drain()
        assert _events(logs, "warning") == []
        assert "NATS connection closed" in _events(logs, "info")
    finally:
        embedded.stop(server)


async def test_a_lost_server_is_a_warning(tmp_path: Path) -> None:
    server, url = embedded.start_nats(tmp_path / "nats")
    try:
        with capture_logs() as logs:
            nc = await connect_nats(url)
            embedded.stop(server)
            for _ in range(100):
                if nc.is_reconnecting or not nc.is_connected:
                    break
                await asyncio.sleep(0.05)
            await nc.close()
        assert "NATS disconnected; reconnecting" in _events(logs, "warning")
    finally:
        embedded.stop(server)
