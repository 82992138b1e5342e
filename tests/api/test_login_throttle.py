"""`POST /api/auth/login` is throttled per account and per client address (429 with Retry-After,
counts shared through PostgreSQL), checks passwords in a bounded pool (503 with Retry-After when it
is full), and a burst of logins leaves `/health` answering."""

import asyncio
import threading
from collections import Counter

import asyncpg
import httpx
import pytest

from controller.access import credentials
from controller.access.credentials import hash_password
from controller.settings import ControllerSettings
from shared.settings import SettingsError, load
from tests.api.helpers import assert_error
from tests.api.login_helpers import client_from, new_address, retry_after, serving
from tests.conftest import PASSWORD, Tenant

pytestmark = pytest.mark.slow

LOGIN = "/api/auth/login"
WRONG = "not the password"


async def _login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post(LOGIN, json={"email": email, "password": password})


async def test_sixty_wrong_guesses_meet_429_with_retry_after(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """With the default settings: the account's first 5 failures are 401s, then every guess is
    a 429 carrying Retry-After (the audit saw sixty 401s)."""
    async with serving(settings, pool) as url, client_from(url, new_address()) as http:
        answers = [await _login(http, tenant.emails["member"], WRONG) for _ in range(60)]
    assert [r.status_code for r in answers[:5]] == [401] * 5
    for r in answers[5:]:
        assert_error(r, 429, code="too_many_requests")
        assert retry_after(r) <= 900
    assert answers[5].headers["retry-after"] == "30"  # the first lockout, LOGIN_LOCKOUT_SECONDS


async def test_the_right_password_is_refused_while_locked_and_works_after_the_lockout(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    email = tenant.emails["admin"]
    async with (
        serving(
            settings,
            pool,
            login_account_failures=3,
            login_lockout_seconds=1,
            login_lockout_max_seconds=2,
        ) as url,
        client_from(url, new_address()) as http,
    ):
        assert [(await _login(http, email, WRONG)).status_code for _ in range(3)] == [401] * 3
        locked = await _login(http, email, PASSWORD)
        assert_error(locked, 429)
        await asyncio.sleep(retry_after(locked))
        r = await _login(http, email, PASSWORD)
        assert r.status_code == 200, r.text
        # The success starts the account's count over: three more failures before a lockout.
        assert [(await _login(http, email, WRONG)).status_code for _ in range(3)] == [401] * 3


async def test_lockouts_double_up_to_the_cap(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """After each lockout a single failure locks again, for twice as long, up to the cap."""
    email = tenant.emails["readonly"]
    async with (
        serving(
            settings,
            pool,
            login_account_failures=1,
            login_lockout_seconds=1,
            login_lockout_max_seconds=2,
        ) as url,
        client_from(url, new_address()) as http,
    ):
        waits = []
        for _ in range(3):
            assert (await _login(http, email, WRONG)).status_code == 401
            locked = await _login(http, email, WRONG)
            assert_error(locked, 429)
            waits.append(retry_after(locked))
            await asyncio.sleep(waits[-1])
    assert waits == [1, 2, 2]


async def test_one_address_guessing_across_accounts_is_throttled_per_address(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    """LOGIN_ADDRESS_PER_MINUTE failures from one address, whatever the accounts (unknown ones
    too), then 429 for up to a minute; another address is not affected."""
    attacker, bystander = new_address(), new_address()
    async with (
        serving(settings, pool, login_address_per_minute=5) as url,
        client_from(url, attacker) as http,
        client_from(url, bystander) as other,
    ):
        statuses = [
            (await _login(http, f"nobody-{i}@example.com", WRONG)).status_code for i in range(5)
        ]
        assert statuses == [401] * 5
        r = await _login(http, "nobody-5@example.com", WRONG)
        assert_error(r, 429)
        assert retry_after(r) <= 60
        assert (await _login(other, "nobody-5@example.com", WRONG)).status_code == 401


async def test_successful_logins_do_not_use_up_the_address_budget(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """An office behind one address: its people logging in are not throttled, only failures
    count."""
    async with (
        serving(settings, pool, login_address_per_minute=4) as url,
        client_from(url, new_address()) as http,
    ):
        for _ in range(3):
            for role in ("member", "admin", "readonly"):
                r = await _login(http, tenant.emails[role], PASSWORD)
                assert r.status_code == 200, r.text


async def test_each_replica_refuses_a_flood_before_any_other_work(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    """Litestar's rate limiter, in memory: three times LOGIN_ADDRESS_PER_MINUTE requests of any
    kind (here malformed ones, which the shared count never sees) per address and minute."""
    async with (
        serving(settings, pool, login_address_per_minute=2) as url,
        client_from(url, new_address()) as http,
    ):
        for _ in range(6):
            assert_error(await http.post(LOGIN, json={"email": "x"}), 400)
        r = await http.post(LOGIN, json={"email": "x"})
        assert_error(r, 429)
        assert retry_after(r) <= 60


async def test_a_known_address_is_not_locked_out_by_guesses_from_elsewhere(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """How a lockout cannot keep a user out: the user logged in from `home` before; a stranger's
    failures lock the account for strangers, even with the right password, but not from home.
    From home, failures are counted by the same rules on a count of their own."""
    email = tenant.emails["owner"]
    async with (
        serving(settings, pool, login_account_failures=2) as url,
        client_from(url, new_address()) as home,
        client_from(url, new_address()) as stranger,
    ):
        assert (await _login(home, email, PASSWORD)).status_code == 200
        assert [(await _login(stranger, email, WRONG)).status_code for _ in range(2)] == [401] * 2
        assert_error(await _login(stranger, email, PASSWORD), 429)
        assert (await _login(home, email, PASSWORD)).status_code == 200
        assert [(await _login(home, email, WRONG)).status_code for _ in range(2)] == [401] * 2
        assert_error(await _login(home, email, PASSWORD), 429)


async def test_counts_are_shared_by_replicas(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Two API processes' worth of apps on one database and SECRETS_KEY: failures on one lock
    the account on the other."""
    email = tenant.emails["member"]
    shared = {"secrets_key": settings.secrets.secrets_key, "login_account_failures": 2}
    address = new_address()
    # `serving` gives each app a key of its own unless told; replicas share SECRETS_KEY.
    async with (
        serving(settings, pool, **shared) as one,
        serving(settings, pool, **shared) as two,
        client_from(one, address) as first,
        client_from(two, address) as second,
    ):
        assert (await _login(first, email, WRONG)).status_code == 401
        assert (await _login(second, email, WRONG)).status_code == 401
        assert_error(await _login(first, email, PASSWORD), 429)
        assert_error(await _login(second, email, PASSWORD), 429)


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    """A client cannot dodge the address limit with X-Forwarded-For (uvicorn trusts it from
    loopback by default: not here). From a proxy in API_TRUSTED_PROXIES, the forwarded client
    is the one counted."""

    async def failures(url: str, peer: str) -> list[int]:
        async with client_from(url, peer) as http:
            return [
                (
                    await http.post(
                        LOGIN,
                        json={"email": "nobody@example.com", "password": WRONG},
                        headers={"X-Forwarded-For": f"198.51.100.{i}"},
                    )
                ).status_code
                for i in range(4)
            ]

    async with serving(settings, pool, login_address_per_minute=2) as url:
        assert await failures(url, "127.0.0.1") == [401, 401, 429, 429]
    proxy = new_address()
    async with serving(
        settings, pool, login_address_per_minute=2, api_trusted_proxies=f"{proxy}/32"
    ) as url:
        assert await failures(url, proxy) == [401] * 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_TRUSTED_PROXIES": "10.0.0.0/8, *"}, "API_TRUSTED_PROXIES: '*' is not an IP"),
        (
            {"LOGIN_LOCKOUT_SECONDS": "60", "LOGIN_LOCKOUT_MAX_SECONDS": "30"},
            "LOGIN_LOCKOUT_MAX_SECONDS must be at least LOGIN_LOCKOUT_SECONDS",
        ),
        ({"PASSWORD_HASH_WORKERS": "0"}, "setting PASSWORD_HASH_WORKERS is invalid"),
    ],
)
def test_bad_login_settings_stop_the_process_naming_them(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load(ControllerSettings, {"DATABASE_URL": "postgresql://localhost/x", **env})
    assert message in str(raised.value)


def test_trusted_proxies_are_normalised_for_uvicorn() -> None:
    env = {"DATABASE_URL": "postgresql://localhost/x", "API_TRUSTED_PROXIES": "10.1.2.3/8, ::1"}
    assert load(ControllerSettings, env).api.trusted_proxies == ["10.0.0.0/8", "::1/128"]


POLL_S = 0.01


async def _health_polls(url: str, done: asyncio.Event) -> int:
    """`/health` every POLL_S until `done`, from an address of its own: how many were answered
    (each must be a 200)."""
    answered = 0
    async with client_from(url, new_address()) as http:
        while not done.is_set():
            assert (await http.get("/health")).status_code == 200
            answered += 1
            await asyncio.sleep(POLL_S)
    return answered


async def test_a_burst_at_one_account_checks_at_most_its_allowance_off_the_event_loop(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 concurrent wrong logins at one account from 20 addresses: at most
    LOGIN_ACCOUNT_FAILURES of them get a password check (401), however concurrent (each
    attempt is counted before its check); the rest are 429 (throttled) or 503 (password
    threads full), each with Retry-After. Every check runs in a password thread, never on the
    event loop's thread (argon2-cffi releases the GIL while it hashes, so the loop, and
    `/health` with it, keeps running), and `/health` answers all the while.

    The rule is judged by where each check ran, not by how late `/health` answered: on a loaded
    machine a poll's lateness measures the machine, not the product."""
    email = tenant.emails["member"]
    async with pool.acquire() as conn:  # the product's own argon2 cost, not a test stand-in
        await conn.execute(
            "UPDATE users SET password_hash = $1 WHERE email = $2", hash_password(PASSWORD), email
        )
    checked_on: list[int] = []
    real_verify = credentials.verify_password

    def verify(password_hash: str | None, password: str) -> bool:
        checked_on.append(threading.get_ident())
        return real_verify(password_hash, password)

    monkeypatch.setattr(credentials, "verify_password", verify)
    loop_thread = threading.get_ident()
    async with serving(settings, pool, login_address_per_minute=1000) as url:
        clients = [client_from(url, new_address()) for _ in range(20)]
        done = asyncio.Event()
        try:
            watcher = asyncio.create_task(_health_polls(url, done))
            answers = await asyncio.gather(
                *(_login(clients[i % 20], email, WRONG) for i in range(200))
            )
            done.set()
            polls = await watcher
        finally:
            for http in clients:
                await http.aclose()
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {401, 429, 503}, statuses
    assert 1 <= statuses[401] <= 5, statuses
    for r in answers:
        if r.status_code != 401:
            retry_after(r)
    assert len(checked_on) == statuses[401], (len(checked_on), statuses)
    assert loop_thread not in checked_on, "a password was checked on the event loop's thread"
    assert polls >= 1, "/health was never answered during the burst"


async def test_creating_a_user_hashes_in_the_pool_and_says_when_it_is_full(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """POST /api/users hashes through the same bounded pool: with one thread and no queue,
    concurrent creations beyond it answer 503 with Retry-After, and the rest are created."""
    async with (
        serving(settings, pool, password_hash_workers=1, password_hash_queue=0) as url,
        client_from(url, new_address()) as http,
    ):
        answers = await asyncio.gather(
            *(
                http.post(
                    "/api/users",
                    json={"email": f"c{i}-{tenant.org_name}@example.com", "password": "x" * 12},
                    headers=tenant.auth(),
                )
                for i in range(6)
            )
        )
    statuses = Counter(r.status_code for r in answers)
    assert statuses[201] >= 1 and statuses[503] >= 1, statuses
    for r in answers:
        if r.status_code == 503:
            assert_error(r, 503, code="busy")
            assert retry_after(r) == 1
