"""deploy/haproxy/haproxy.cfg, as shipped but for its addresses (loopback ports here for the
compose services' names), run by Debian's HAProxy in front of two real controllers: requests
go to both; a controller whose /ready fails (its database pool gone) is taken out and put
back once ready again; a controller that stops is passed over without a failed request. Each
controller has its own INSTANCE_KEY, so its /instance-proof answer says which one served."""

import asyncio
import dataclasses
import re
import secrets
import subprocess
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest

from controller.access.instance_proof import proof
from controller.db.pool import create_pool
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from testkit.front_attacks import answer_status, closed_within, connect, get, silent, wide_head
from testkit.serving import serve_app
from tests.deploy.test_deploy_files import DEPLOY

HAPROXY = Path("/usr/sbin/haproxy")
SHIPPED = DEPLOY / "haproxy" / "haproxy.cfg"


def local_config(port: int, controllers: dict[str, int]) -> str:
    """The shipped file with its listening port and each server's address on loopback; no DNS
    (the addresses are literal)."""
    text = SHIPPED.read_text()
    text, bound = re.subn(r"^  bind :\d+$", f"  bind 127.0.0.1:{port}", text, flags=re.M)
    assert bound == 1
    for name, backend_port in controllers.items():
        text, n = re.subn(
            rf"^  server {name} \S+$", f"  server {name} 127.0.0.1:{backend_port}", text, flags=re.M
        )
        assert n == 1, name
    return text.replace(" resolvers docker", "")


def test_haproxy_accepts_the_shipped_file_as_it_is() -> None:
    checked = subprocess.run(
        [str(HAPROXY), "-c", "-f", str(SHIPPED)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


async def test_requests_go_only_to_ready_controllers_and_none_fails_when_one_stops(
    settings: ControllerSettings, database_url: str, tmp_path: Path
) -> None:
    keys = {"controller": secrets.token_hex(32), "controller-2": secrets.token_hex(32)}
    async with AsyncExitStack() as stack:
        pools: dict[str, asyncpg.Pool] = {}
        apps, urls = {}, {}
        for name, key in keys.items():
            pools[name] = await create_pool(database_url, max_size=2)
            apps[name] = create_app(settings.replace(instance_key=key), pools[name])
        servers: dict[str, AsyncExitStack] = {}
        for name, app in apps.items():
            servers[name] = AsyncExitStack()
            urls[name] = await servers[name].enter_async_context(serve_app(app))
            stack.push_async_callback(servers[name].aclose)
        for pool in pools.values():
            stack.push_async_callback(pool.close)
        port = embedded.free_port()
        backends = {n: int(u.rsplit(":", 1)[1]) for n, u in urls.items()}
        (tmp_path / "haproxy.cfg").write_text(local_config(port, backends))
        proc = await asyncio.create_subprocess_exec(
            str(HAPROXY), "-db", "-f", str(tmp_path / "haproxy.cfg"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

        async def stop_haproxy() -> None:
            proc.kill()
            await proc.wait()

        stack.push_async_callback(stop_haproxy)
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
        )

        async def served_by() -> str:
            """Which controller answered one request through the balancer ("" on a failure)."""
            challenge = secrets.token_hex(32)
            try:
                r = await client.get("/instance-proof", params={"challenge": challenge})
            except httpx.TransportError:
                return ""
            if r.status_code != 200:
                return ""
            answer = r.json()["proof"]
            return next(
                n
                for n, k in keys.items()
                if proof(k, challenge, "127.0.0.1", settings.api.api_port) == answer
            )

        async def until(wanted: set[str], within_s: float = 30) -> Counter[str]:
            """Requests until 8 in a row came from exactly `wanted`; what the last 8 were."""
            async with asyncio.timeout(within_s):
                while True:
                    seen = Counter([await served_by() for _ in range(8)])
                    if set(seen) == wanted:
                        return seen
                    await asyncio.sleep(0.2)

        # Both ready: round robin reaches both.
        await until({"controller", "controller-2"})
        # controller-2's database gone: /ready 503; after two failed checks it gets nothing.
        await pools["controller-2"].close()
        await until({"controller"})
        # Ready again (a new pool): two passed checks put it back.
        fresh = await create_pool(database_url, max_size=2)
        stack.push_async_callback(fresh.close)
        state = apps["controller-2"].state
        state.services = dataclasses.replace(state.services, pool=fresh)
        await until({"controller", "controller-2"})
        # controller stops (its port refuses): no request fails, each lands on controller-2.
        await servers["controller"].aclose()
        answered = [await served_by() for _ in range(20)]
        assert answered == ["controller-2"] * 20, Counter(answered)


@pytest.fixture(autouse=True)
def _haproxy_installed() -> None:
    if not HAPROXY.exists():
        pytest.fail("Debian's haproxy is missing: make test-debs installs it")


async def test_the_shipped_balancer_bounds_each_anonymous_client(
    settings: ControllerSettings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Through the shipped file to a real controller: 80 connections from one address, those
    past its 64 closed at once while `/health` from another address is answered; a head of
    11,111 fields answered 400."""
    async with serve_app(create_app(settings, pool)) as url, AsyncExitStack() as stack:
        port = embedded.free_port()
        config = local_config(port, {"controller": int(url.rsplit(":", 1)[1])})
        config = re.sub(r"^  server controller-2 .*\n", "", config, flags=re.M)
        (tmp_path / "haproxy.cfg").write_text(config)
        proc = await asyncio.create_subprocess_exec(
            str(HAPROXY), "-db", "-f", str(tmp_path / "haproxy.cfg"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

        async def stop_haproxy() -> None:
            proc.kill()
            await proc.wait()

        stack.push_async_callback(stop_haproxy)
        for _ in range(500):
            if await asyncio.to_thread(get, port, "/health", "127.0.0.11") == 200:
                break
            await asyncio.sleep(0.02)
        held = await asyncio.to_thread(silent, port, ["127.0.0.10"], 80)
        try:
            await asyncio.sleep(0.5)
            closed = await asyncio.to_thread(
                lambda: sum(closed_within(s, 0.01) is not None for s in held)
            )
            assert await asyncio.to_thread(get, port, "/health", "127.0.0.11") == 200
        finally:
            for sock in held:
                sock.close()
        assert len(held) - closed == 64, (len(held), closed)  # a refused one may fail to connect
        with connect(port, "127.0.0.12") as sock:
            sock.sendall(wide_head(11_111))
            assert answer_status(sock) == 400
