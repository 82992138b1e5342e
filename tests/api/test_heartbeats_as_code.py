"""Heartbeat monitors as code against the real API (issue 83): `apply` creates them from a
monitors file, `export` writes them back without their address, the export applies as no change,
and an applied change keeps the address (the monitor's identity to its senders); a bad field is
refused at its line, naming it, before any request."""

import httpx
import pytest

from controller.ascode.run import current, export_text
from controller.ascode.spec import SpecError, load
from tests.api.test_monitors_as_code import client, run  # noqa: F401 (the fixture)
from tests.conftest import Tenant

PATH = "/api/heartbeat-monitors"


def heartbeats_file(customer: str, grace: int = 30) -> str:
    return f"""\
customer: {customer}
monitors:
  - type: heartbeat
    name: Nightly backup report
    heartbeatConfig:
      everyMinutes: 1440
      graceMinutes: {grace}
      sender: backup@example.com
      subject: Backup report
  - type: heartbeat
    name: ERP invoices
    status: disabled
    heartbeatConfig:
      byTime: "07:30"
      timeZone: Europe/Berlin
      days: [mon, fri]
      expected: 2
  - type: smtp
    name: Outbound relay
    hostname: smtp.example.com
"""


async def _addresses(api: httpx.AsyncClient) -> dict[str, str]:
    r = await api.get(PATH)
    assert r.status_code == 200, r.text
    return {m["name"]: m["localPart"] for m in r.json()["items"]}


async def test_apply_export_apply_keeps_heartbeats_and_their_addresses(
    client: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
) -> None:
    customer = tenant.customer_public_id
    code, said = await run(load(heartbeats_file(customer), "m.yaml", {}), client)
    assert code == 0, said
    assert said[:3] == [
        "+ create heartbeat 'Nightly backup report'",
        "+ create heartbeat 'ERP invoices'",
        "+ create smtp 'Outbound relay'",
    ], said
    made = await _addresses(client)
    assert set(made) == {"Nightly backup report", "ERP invoices"}
    erp = next(m for m in (await client.get(PATH)).json()["items"] if m["name"] == "ERP invoices")
    assert erp["status"] == "disabled"
    assert erp["heartbeatConfig"]["byTime"] == "07:30"
    assert erp["heartbeatConfig"]["days"] == ["mon", "fri"]

    code, said = await run(load(heartbeats_file(customer), "m.yaml", {}), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said

    text = export_text(customer, await current(client, customer))
    assert "type: heartbeat" in text and "byTime: 07:30" in text.replace("'", "")
    assert not any(local in text for local in made.values()), "the address is not the file's"
    code, said = await run(load(text, "exported.yaml", {}), client)
    assert code == 0 and all(line.startswith("=") for line in said[:-1]), said

    code, said = await run(load(heartbeats_file(customer, grace=90), "m.yaml", {}), client)
    assert code == 0, said
    assert "~ update heartbeat 'Nightly backup report' (config)" in said, said
    assert await _addresses(client) == made, "apply never makes a new address"
    nightly = next(
        m for m in (await client.get(PATH)).json()["items"] if m["name"] == "Nightly backup report"
    )
    assert nightly["heartbeatConfig"]["graceMinutes"] == 90

    only_smtp = heartbeats_file(customer).split("  - type: smtp")[0].split("monitors:")[0]
    only_smtp += "monitors:\n  - type: smtp\n    name: Outbound relay\n"
    only_smtp += "    hostname: smtp.example.com\n"
    code, said = await run(load(only_smtp, "m.yaml", {}), client, prune=True)
    assert code == 0, said
    assert "- delete heartbeat 'ERP invoices'" in said, said
    assert await _addresses(client) == {}


@pytest.mark.parametrize(
    ("change", "expected", "named"),
    [
        (("everyMinutes: 1440", "everyMinutes: 0"), "m.yaml:6: ", "everyMinutes"),
        (("graceMinutes: 30", "graceMinutes: lots"), "m.yaml:7: ", "graceMinutes"),
        (("timeZone: Europe/Berlin", "timeZone: Mars/Olympus"), "m.yaml:13: ", "timeZone"),
        # the address is the controller's: a file cannot set it
        (
            ("subject: Backup report", "subject: Backup report\n      localPart: mine"),
            "m.yaml:",
            "localPart",
        ),
    ],
)
def test_a_bad_heartbeat_field_is_refused_at_its_line_naming_it(
    change: tuple[str, str], expected: str, named: str
) -> None:
    text = heartbeats_file("11111111-1111-4111-8111-111111111111")
    assert change[0] in text
    with pytest.raises(SpecError) as refused:
        load(text.replace(*change, 1), "m.yaml", {})
    assert any(p.startswith(expected) and named in p for p in refused.value.problems), (
        refused.value.problems
    )
