import httpx

from tests.conftest import Tenant


async def test_seed_create_roundtrip(http: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {
        "customerId": tenant.customer_public_id,
        "name": "Outbound SMTP",
        "hostname": "smtp.example.com",
        "port": 587,
        "status": "active",
        "checkInterval": 60,
        "timeoutSeconds": 30,
        "smtpConfig": {
            "secure": False,
            "ignoreTls": False,
            "requireTls": False,
            "auth": {"user": "username", "pass": "password"},
        },
    }
    r = await http.post("/api/smtp-monitors", json=body, headers=tenant.auth())
    print(r.status_code, r.text)
    assert r.status_code == 201
