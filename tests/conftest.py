"""Session-wide real servers: PostgreSQL and NATS (embedded unless TEST_DATABASE_URL /
TEST_NATS_URL are given) and the API served by uvicorn on a loopback port."""

# First: no garbage collection while the test modules are imported (testkit/pytest_gc.py).
from testkit import pytest_gc  # isort: skip

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvloop
from argon2 import PasswordHasher

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.access.credentials import new_token
from controller.db.migrate import migrate
from controller.db.pool import connect, create_pool
from controller.jobs.rules import JobIds
from controller.secrets.box import SecretBox, generate_key
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from shared.clock import WALL
from testkit import cpu_table
from testkit.common import plain_tracebacks
from testkit.serving import http_client, serve_app

# The command-line tools run by tests must not find a developer's `make run` in .run/ (its API
# and instance key): they look in a folder that does not exist (controller.ascode.run_dir).
os.environ["MAILPROBE_RUN_DIR"] = f"/nonexistent/mailprobe-tests-{uuid.uuid4().hex}"


def pytest_configure(config: pytest.Config) -> None:
    """TEST_CPU_TABLE=<file>: each test file's CPU-seconds, a table (testkit/cpu_table.py).
    Logged exceptions are plain tracebacks (testkit.common.plain_tracebacks). Event loops are
    uvloop's."""
    cpu_table.register(config)
    plain_tracebacks()
    # Tests run on the loop the controller and the agent run on (shared/loop.py).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def pytest_sessionstart(session: pytest.Session) -> None:
    if not pytest_gc.collects(session.config):
        pytest_gc.resume()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    pytest_gc.resume()


def pytest_unconfigure(config: pytest.Config) -> None:
    pytest_gc.resume()  # a run that stopped before collecting


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked `slow` run first, the rest in collection order: with a file per worker at a
    time (`make test`: `--dist loadfile --no-loadscope-reorder`), a long file started last
    would leave the other workers idle while it ends."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mailprobe-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
async def database_url(tmp_root: Path) -> AsyncIterator[str]:
    """A fresh database on the test server, migrated."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    handle = None
    if not server_url:
        handle, server_url = embedded.start_postgres(tmp_root / "pg", throwaway=True)
    name = f"mailprobe_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(server_url, name)
    conn = await connect(url)
    await migrate(conn)
    await conn.close()
    # a copy no one connects to, which scratch databases beside this one are cloned from
    template = f"{name}_template"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{template}" TEMPLATE "{name}"')
    await admin.close()
    _TEMPLATES[url] = template
    yield url
    del _TEMPLATES[url]
    admin = await asyncpg.connect(server_url)
    for db in (name, template):
        await admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
    await admin.close()
    if handle is not None:
        handle.cleanup()


def _with_database(url: str, name: str) -> str:
    base, sep, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}{sep}{query}"


# The session database's URL → the name of its migrated template (`database_url`).
_TEMPLATES: dict[str, str] = {}


@asynccontextmanager
async def scratch_database(url: str, prefix: str) -> AsyncIterator[str]:
    """A new migrated database beside `url`'s, dropped at exit; for tests whose scheduler
    claims every due monitor of its database, so no other test's monitors may be there. Beside
    the session's database it is a copy of that one's migrated template (a clone costs the
    server a file copy; migrating costs it every migration again)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    template = _TEMPLATES.get(url)
    admin = await asyncpg.connect(url)
    clause = f' TEMPLATE "{template}"' if template else ""
    await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    await admin.close()
    scratch = _with_database(url, name)
    if template is None:
        conn = await connect(scratch)
        await migrate(conn)
        await conn.close()
    try:
        yield scratch
    finally:
        admin = await asyncpg.connect(url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def nats_url(tmp_root: Path) -> Iterator[str]:
    given = os.environ.get("TEST_NATS_URL")
    if given:
        yield given
        return
    proc, url = embedded.start_nats(tmp_root / "nats")
    yield url
    embedded.stop(proc)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, 10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def settings(database_url: str) -> ControllerSettings:
    # Every test's client is 127.0.0.1: the API's rate per address is off here (its own tests,
    # tests/ops/test_http_front.py and tests/unit/test_request_rate.py, set it).
    return ControllerSettings.of(
        database_url=database_url,
        secrets_key=generate_key(),
        public_url="http://localhost:8080",
        api_requests_per_second_per_address=0,
    )


@pytest.fixture(scope="session")
def job_ids(settings: ControllerSettings) -> JobIds:
    """The job ids the controllers of these tests make (and their ingesters accept)."""
    return JobIds.from_box(SecretBox(settings.secrets.secrets_key or ""))


@pytest.fixture(scope="session")
async def api_url(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The API served over real HTTP on a loopback port."""
    async with serve_app(create_app(settings, pool)) as url:
        yield url


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=api_url, timeout=10) as client:
        yield client


@dataclass
class Tenant:
    """A fresh organization with one user per role (and `operator`: a member who is one of the
    deployment's operators), a customer, and their tokens."""

    org_id: int
    org_name: str
    customer_id: int
    customer_public_id: str
    tokens: dict[str, str]
    emails: dict[str, str]

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


# What a process of ours (`python -m agent`, `python -m controller ...`) may take to start on a
# loaded host: imports, settings, and for `serve` its migrations and NATS.
PROCESS_START_S = 30.0

PASSWORD = "correct horse battery"
# Test users' password, stored as an argon2id hash of the lowest cost. A login verifies with the
# parameters the stored hash names, so logging in as them costs the API's password thread (nice
# 10) microseconds instead of the product's 64 MiB x 3 passes, which a loaded machine starves
# for seconds: these tests are about accounts, not about hashing cost. Hashes the API makes
# itself keep the product's parameters (tests/api/test_throttle_rules.py).
_PASSWORD_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


async def make_tenant(pool: asyncpg.Pool, *, supporter: bool = False) -> Tenant:
    tag = uuid.uuid4().hex[:10]
    tokens: dict[str, str] = {}
    emails: dict[str, str] = {}
    async with pool.acquire() as conn:
        org_id = await accounts.ensure_organization(conn, f"org-{tag}")
        # `operator`: a member who is one of the deployment's operators
        roles = [*accounts.ROLES, "operator", *(["supporter"] if supporter else [])]
        for role in roles:
            email = f"{role}-{tag}@example.com"
            user = await accounts.create_user(
                conn,
                org_id,
                email,
                _PASSWORD_HASH,
                {"supporter": "readonly", "operator": "member"}.get(role, role),
                role == "supporter",
                role == "operator",
            )
            token, digest = new_token()
            await accounts.issue_token(conn, user.id, digest, 3600, WALL.now())
            tokens[role], emails[role] = token, email
        customer = await customers.create(conn, org_id, f"Customer {tag}")
    return Tenant(org_id, f"org-{tag}", customer.id, str(customer.public_id), tokens, emails)


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    return await make_tenant(pool)
