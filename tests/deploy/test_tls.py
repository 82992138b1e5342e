"""TLS as docs/operating.md documents it, with certificates from a throwaway CA (trustme).

NATS: a real nats-server with a `tls {}` block that also verifies client certificates; the
controller's pipeline and an agent Worker connect with NATS_TLS_CA_FILE / NATS_TLS_CERT_FILE /
NATS_TLS_KEY_FILE on a `tls://` URL and run a check end to end, while a client without the CA,
or without a client certificate, is turned away. API: `serve`'s uvicorn server with
API_TLS_CERT_FILE / API_TLS_KEY_FILE answers HTTPS that verifies against the CA.
"""

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import nats
import pytest
import trustme
from nats.aio.client import Client as NATS

from agent.__main__ import _connect
from agent.probers.tls import build_ssl_contexts
from agent.settings import AgentSettings
from controller.runtime.pipeline import open_pipeline
from controller.runtime.serve import api_server
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from shared.clock import WALL
from shared.messages import decode_result
from shared.settings import SettingsError, load
from shared.subjects import RESULTS_STREAM, results_country_filter
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, worker

COUNTRY = "LK"  # only this module's server sees it


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("agent-LK.mailprobe.test")
    paths = Pki(*(folder / n for n in ("ca.pem", "srv.pem", "srv.key", "cli.pem", "cli.key")))
    ca.cert_pem.write_to_path(str(paths.ca))
    server.cert_chain_pems[0].write_to_path(str(paths.server_cert))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(paths.server_cert), append=True)
    server.private_key_pem.write_to_path(str(paths.server_key))
    client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
    client.private_key_pem.write_to_path(str(paths.client_key))
    return paths


@pytest.fixture(scope="module")
def tls_nats(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server that speaks only TLS and wants a client certificate from our CA."""
    folder = tmp_path_factory.mktemp("nats-tls")
    conf = folder / "tls.conf"
    conf.write_text(
        "tls {\n"
        f'  cert_file: "{pki.server_cert}"\n'
        f'  key_file: "{pki.server_key}"\n'
        f'  ca_file: "{pki.ca}"\n'
        "  verify: true\n"
        "  timeout: 2\n"
        "}\n"
    )
    proc, url = embedded.start_nats(folder / "store", config=conf)
    yield url.replace("nats://", "tls://")
    embedded.stop(proc)


def nats_tls_env(pki: Pki, url: str) -> dict[str, str]:
    return {
        "NATS_URL": url,
        "NATS_TLS_CA_FILE": str(pki.ca),
        "NATS_TLS_CERT_FILE": str(pki.client_cert),
        "NATS_TLS_KEY_FILE": str(pki.client_key),
    }


async def test_controller_and_agent_run_a_check_over_nats_tls(
    pki: Pki, tls_nats: str, settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    env = nats_tls_env(pki, tls_nats)
    base = {
        "DATABASE_URL": settings.database.database_url,
        "SECRETS_KEY": settings.secrets.secrets_key or "",
    }
    controller = load(ControllerSettings, {**base, **env})
    agent = load(AgentSettings, {"AGENT_COUNTRY": COUNTRY, **env})
    async with open_pipeline(
        controller, pool, clock=WALL
    ) as pipeline:  # creates the streams over TLS
        nc = await _connect(agent, f"{COUNTRY}-tls", asyncio.Event())
        assert nc is not None and nc.connected_url is not None
        assert nc.connected_url.scheme == "tls"
        try:
            async with SmtpLikePeer() as peer:
                job = job_for(COUNTRY, peer.port)
                await publish_job(pipeline.js, job)
                await worker(nc, COUNTRY, build_ssl_contexts()).run(burst=True)
        finally:
            await nc.drain()
        sub = await pipeline.js.pull_subscribe(
            results_country_filter(COUNTRY), stream=RESULTS_STREAM
        )
        [msg] = await sub.fetch(1, timeout=5)
        await sub.unsubscribe()
    result = decode_result(msg.data)
    assert (result.job_id, result.status) == (job.job_id, "up")


async def refused(url: str, tls: ssl.SSLContext) -> Exception:
    """The error of a single connection attempt."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    with pytest.raises(Exception) as caught:
        nc: NATS = await nats.connect(
            url, tls=tls, allow_reconnect=False, connect_timeout=2, error_cb=on_error
        )
        await nc.close()
    return errors[0] if errors else caught.value


async def test_nats_turns_away_clients_without_the_ca_or_without_a_client_certificate(
    pki: Pki, tls_nats: str
) -> None:
    untrusting = ssl.create_default_context()  # the system's CAs do not know ours
    assert isinstance(await refused(tls_nats, untrusting), ssl.SSLCertVerificationError)
    certless = pki.trusting()  # trusts the server, but shows no certificate of its own
    error = await refused(tls_nats, certless)
    # The server ends the handshake (the same context plus a certificate gets in: the test above).
    assert isinstance(error, ConnectionError | ssl.SSLError), error
    assert not isinstance(error, ssl.SSLCertVerificationError), error


async def test_api_serves_https_with_its_certificate(
    pki: Pki, settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    port = embedded.free_port()
    tls = load(
        ControllerSettings,
        {
            "DATABASE_URL": settings.database.database_url,
            "SECRETS_KEY": settings.secrets.secrets_key or "",
            "API_PORT": str(port),
            "API_TLS_CERT_FILE": str(pki.server_cert),
            "API_TLS_KEY_FILE": str(pki.server_key),
        },
    )
    server = api_server(tls.api, create_app(tls, pool))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(verify=pki.trusting(), timeout=5) as client:
            r = await client.get(f"https://127.0.0.1:{port}/health")
            assert (r.status_code, r.json()["status"]) == (200, "ok")
        async with httpx.AsyncClient(timeout=5) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://127.0.0.1:{port}/health")
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"http://127.0.0.1:{port}/health")  # plain HTTP: no answer
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_TLS_CERT_FILE": "{cert}"}, "API_TLS_CERT_FILE and API_TLS_KEY_FILE must be set"),
        (
            {"API_TLS_CERT_FILE": "{ca}", "API_TLS_KEY_FILE": "{ca}"},
            "API_TLS_CERT_FILE / API_TLS_KEY_FILE cannot be loaded",
        ),
        ({"NATS_TLS_CA_FILE": "/nonexistent/ca.pem"}, "NATS_TLS_CA_FILE cannot be loaded"),
        ({"NATS_TLS_KEY_FILE": "{key}"}, "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set"),
    ],
)
def test_tls_settings_are_checked_at_start(pki: Pki, env: dict[str, str], message: str) -> None:
    files = {"cert": pki.server_cert, "key": pki.server_key, "ca": pki.ca}
    given = {k: v.format(**files) for k, v in env.items()}
    with pytest.raises(SettingsError, match=message) as caught:
        load(ControllerSettings, {"DATABASE_URL": "postgresql://u@localhost/db", **given})
    assert "\n" not in str(caught.value)
    if "API_" not in message:
        with pytest.raises(SettingsError, match=message):
            load(AgentSettings, {"AGENT_COUNTRY": "DE", **given})


def test_settings_accept_a_ca_alone(pki: Pki) -> None:
    """Server verification without a client certificate: the common case."""
    loaded = load(AgentSettings, {"AGENT_COUNTRY": "DE", "NATS_TLS_CA_FILE": str(pki.ca)})
    assert loaded.process.nats_tls_ca_file == str(pki.ca)
    assert msgspec.structs.asdict(loaded.process)["nats_tls_cert_file"] is None
