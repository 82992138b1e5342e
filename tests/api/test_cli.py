"""`python -m controller ...`: the operator commands of README.md, run as subprocesses."""

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.api.helpers import SMTP, as_got, assert_error, create, seed_body
from tests.conftest import Tenant

pytestmark = [pytest.mark.breadth, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ("DATABASE_URL", "NATS_URL", "SECRETS_KEY", "API_HOST", "API_PORT", "TOKEN_TTL_SECONDS")


@dataclass
class Run:
    code: int
    out: str
    err: str


async def cli(*args: str, database_url: str | None) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["LOG_FORMAT"] = "json"
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert lines, "no output"
    return lines[-1]


async def test_create_admin_prints_a_working_token(
    http: httpx.AsyncClient, database_url: str, pool: asyncpg.Pool
) -> None:
    """create-admin makes the organization and an admin; the token alone on the last line works."""
    org, email = f"cli-org-{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}@example.com"
    run = await cli(
        "create-admin",
        "--org",
        org,
        "--email",
        email,
        "--password",
        "cli password 1",
        database_url=database_url,
    )
    assert run.code == 0, run.err
    token = last_line(run.out)
    assert token.startswith("mp_") and " " not in token
    headers = {"Authorization": f"Bearer {token}"}
    me = await http.get("/api/auth/me", headers=headers)
    assert me.status_code == 200
    assert (me.json()["email"], me.json()["role"], me.json()["isGlobalSupporter"]) == (
        email,
        "admin",
        False,
    )
    async with pool.acquire() as conn:
        org_id = await conn.fetchval("SELECT id FROM organizations WHERE name = $1", org)
    assert me.json()["organizationId"] == org_id
    # the admin can set the organization up over the API
    r = await http.post("/api/customers", json={"name": "First"}, headers=headers)
    assert r.status_code == 201
    body = {"customerId": r.json()["publicId"], "name": "x", "hostname": "smtp.example.com"}
    assert (await http.post(SMTP, json=body, headers=headers)).status_code == 201
    # and log in with the password given
    r = await http.post("/api/auth/login", json={"email": email, "password": "cli password 1"})
    assert r.status_code == 200
    # the same e-mail again: a clear error, not a traceback
    again = await cli(
        "create-admin", "--org", org, "--email", email, "--password", "x", database_url=database_url
    )
    assert again.code == 1
    assert "exists" in again.err and "Traceback" not in again.err


async def test_create_user_readonly_global_supporter(
    http: httpx.AsyncClient, database_url: str, tenant: Tenant
) -> None:
    monitor = await create(http, tenant)
    email = f"sup-{uuid.uuid4().hex[:8]}@example.com"
    run = await cli(
        "create-user",
        "--org",
        "support-desk",
        "--email",
        email,
        "--password",
        "pw",
        "--role",
        "readonly",
        "--global-supporter",
        database_url=database_url,
    )
    assert run.code == 0, run.err
    headers = {"Authorization": f"Bearer {last_line(run.out)}"}
    me = (await http.get("/api/auth/me", headers=headers)).json()
    assert (me["role"], me["isGlobalSupporter"]) == ("readonly", True)
    # reads another organization's monitor, changes nothing
    r = await http.get(f"{SMTP}/{monitor['publicId']}", headers=headers)
    assert r.status_code == 200 and r.json() == as_got(monitor)
    assert_error(await http.post(SMTP, json=seed_body("smtp", tenant), headers=headers), 403)
    assert_error(
        await http.patch(
            f"{SMTP}/{monitor['publicId']}", json={"status": "disabled"}, headers=headers
        ),
        403,
    )


@pytest.mark.parametrize("role", ["owner", "member", "readonly"])
async def test_create_user_with_role(http: httpx.AsyncClient, database_url: str, role: str) -> None:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    run = await cli(
        "create-user",
        "--org",
        f"cli-{role}",
        "--email",
        email,
        "--password",
        "pw",
        "--role",
        role,
        database_url=database_url,
    )
    assert run.code == 0, run.err
    me = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {last_line(run.out)}"})
    assert me.json()["role"] == role and me.json()["isGlobalSupporter"] is False


async def test_create_user_rejects_unknown_role(database_url: str) -> None:
    run = await cli(
        "create-user",
        "--org",
        "x",
        "--email",
        "r@example.com",
        "--password",
        "pw",
        "--role",
        "root",
        database_url=database_url,
    )
    assert run.code == 2 and "role" in run.err


async def test_migrate_is_idempotent(database_url: str, pool: asyncpg.Pool) -> None:
    """The test database is migrated already: migrate twice more, exit 0, nothing re-applied."""
    async with pool.acquire() as conn:
        before = await conn.fetch(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version"
        )
    first, second = await asyncio.gather(
        cli("migrate", database_url=database_url), cli("migrate", database_url=database_url)
    )
    assert (first.code, second.code) == (0, 0), (first.err, second.err)
    third = await cli("migrate", database_url=database_url)
    assert third.code == 0, third.err
    async with pool.acquire() as conn:
        after = await conn.fetch(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version"
        )
    assert before == after and before


@pytest.mark.parametrize(
    "args",
    [
        ("migrate",),
        ("create-admin", "--org", "x", "--email", "a@example.com", "--password", "p"),
        (
            "create-user",
            "--org",
            "x",
            "--email",
            "a@example.com",
            "--password",
            "p",
            "--role",
            "member",
        ),
        ("serve",),
    ],
)
async def test_missing_database_url_exits_2_naming_it(args: tuple[str, ...]) -> None:
    run = await cli(*args, database_url=None)
    assert run.code == 2
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL" in lines[0], run.err
    assert run.out == ""


async def test_serve_refuses_to_start_without_secrets_key(database_url: str) -> None:
    run = await cli("serve", database_url=database_url)
    assert run.code == 2
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and "SECRETS_KEY" in lines[0], run.err


async def test_malformed_database_url_exits_2() -> None:
    run = await cli("migrate", database_url="mysql://nope")
    assert run.code == 2
    assert len(run.err.strip().splitlines()) == 1 and "DATABASE_URL" in run.err


async def test_gen_key_prints_a_usable_key() -> None:
    from controller.secrets.box import SecretBox

    run = await cli("gen-key", database_url=None)
    assert run.code == 0
    key = last_line(run.out)
    assert SecretBox(key).open(SecretBox(key).seal("x")) == "x"


# What only `serve`, `apply`/`export`, `oauth2-device` or `tail` need: the web framework, the
# notification libraries, the HTTP client.
HEAVY = ("litestar", "apprise", "httpx", "controller.web", "controller.ascode.run")


@pytest.mark.parametrize(
    ("argv", "imported"),
    [
        (["gen-key"], ()),
        (["tail", "--help"], ()),
        (["apply", "--help"], ()),
        # tail, which an API client runs only to look a name up: no web framework
        (["tail", "--monitor", "Outbound relay"], ("httpx",)),
        (["export", "--customer", "1", "--api", "http://example.com"], HEAVY),
    ],
)
async def test_a_command_imports_only_what_it_runs(
    argv: list[str], imported: tuple[str, ...]
) -> None:
    """The grammar (controller.cli) is light; a command's module comes once it is chosen."""
    probe = (
        "import sys\nfrom controller.__main__ import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('imported:', *(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert tuple(last_line(out.decode()).split()) == ("imported:", *imported)


async def test_operator_is_granted_and_revoked_from_the_command_line_only(
    http: httpx.AsyncClient, database_url: str, tenant: Tenant
) -> None:
    """`operator --email` makes an existing user one of the deployment's operators (every
    country's fleet health), `--revoke` undoes it, an unknown address is a clear error; no API
    route sets it (a user's update takes `disabled` only)."""
    email = tenant.emails["owner"]
    headers = tenant.auth("owner")
    assert (await http.get("/api/auth/me", headers=headers)).json()["isOperator"] is False
    run = await cli("operator", "--email", email.upper(), database_url=database_url)
    assert run.code == 0, run.err
    assert (await http.get("/api/auth/me", headers=headers)).json()["isOperator"] is True
    run = await cli("operator", "--email", email, "--revoke", database_url=database_url)
    assert run.code == 0, run.err
    assert (await http.get("/api/auth/me", headers=headers)).json()["isOperator"] is False
    nobody = await cli("operator", "--email", "nobody@example.invalid", database_url=database_url)
    assert nobody.code == 1 and "no user" in nobody.err and "Traceback" not in nobody.err
    me = (await http.get("/api/auth/me", headers=headers)).json()
    r = await http.patch(f"/api/users/{me['publicId']}", json={"isOperator": True}, headers=headers)
    assert r.status_code == 400
    assert (await http.get("/api/auth/me", headers=headers)).json()["isOperator"] is False


async def test_create_user_operator(http: httpx.AsyncClient, database_url: str) -> None:
    email = f"op-{uuid.uuid4().hex[:8]}@example.com"
    args = ["--org", "ops", "--email", email, "--password", "pw", "--role", "member"]
    run = await cli("create-user", *args, "--operator", database_url=database_url)
    assert run.code == 0, run.err
    headers = {"Authorization": f"Bearer {last_line(run.out)}"}
    me = (await http.get("/api/auth/me", headers=headers)).json()
    assert (me["role"], me["isOperator"]) == ("member", True)
    assert (await http.get("/api/fleet", headers=headers)).status_code == 200
