"""A restore's chunk is sent again while its deliver subject has no responder yet (issue 79's
stream move flake: a loaded cluster's stream leader subscribed the subject a moment after it
answered the restore's start, and the first chunk met "no responders")."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from controller.runtime.stream_snapshots import served
from shared import embedded


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    proc, url = embedded.start_nats(tmp_path / "nats")
    try:
        yield url
    finally:
        embedded.stop(proc)


async def test_a_chunk_waits_for_its_subjects_responder_and_gives_up_at_its_timeout(
    nats_url: str,
) -> None:
    nc = NATS()
    await nc.connect(nats_url)
    try:
        got: list[bytes] = []

        async def answer(msg: Msg) -> None:
            got.append(msg.data)
            await msg.respond(b"")

        async def serve_later() -> None:
            await asyncio.sleep(0.5)
            await nc.subscribe("restore.deliver", cb=answer)

        later = asyncio.create_task(serve_later())
        reply = await served(nc, "restore.deliver", b"chunk", 5.0)
        await later
        assert (reply.data, got) == (b"", [b"chunk"])
        with pytest.raises(NoRespondersError):
            await served(nc, "nobody.serves", b"chunk", 0.5)
    finally:
        await nc.close()
