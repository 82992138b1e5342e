"""No credential reaches a log line at any LOG_LEVEL, the dependencies' own loggers included:
a real process with the product's logging (`tests.logs.deliveries`) delivers to every channel
kind, the SMS webhook and the e-mail relay, fetches OAuth2 tokens and logs in to a monitor's
IMAP server, and its stderr is searched for each credential, as is and in base64."""

import asyncio
import base64
import json
import sys

import pytest

from shared.logging import redact
from testkit.alerting.receivers import APPRISE_PASSWORD
from tests.logs import deliveries as d


def _forms() -> list[str]:
    """Each credential, and the base64 a Basic header or an AUTH PLAIN would carry."""
    pairs = [
        ("probe", APPRISE_PASSWORD),
        (d.SMS_USER, d.SMS_PASSWORD),
        (d.MONITOR_USER, d.MONITOR_PASSWORD),
    ]
    encoded = [base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in pairs]
    plain = [base64.b64encode(f"\0{d.SMTP_USER}\0{d.SMTP_PASSWORD}".encode()).decode()]
    return [*d.CREDENTIALS, *encoded, *plain]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_no_credential_of_any_delivery_or_login_reaches_the_log(level: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.logs.deliveries",
        level,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    log = err.decode()
    assert proc.returncode == 0, log[-3000:]
    done = out.decode().splitlines()
    kinds = {"webhook", "slack", "teams", "pagerduty", "opsgenie", "telegram", "apprise"}
    if d.HAS_ALERTMANAGER:
        kinds.add("alertmanager")  # it holds no credential; its line is searched all the same
    assert {f"delivered {k}" for k in kinds} <= set(done), done
    for what in ("sms", "email", "oauth2 client_credentials", "oauth2 refresh_token"):
        assert f"delivered {what}" in done
    assert "delivered imap login up" in done and "delivered imap login down" in done
    lines = [json.loads(line) for line in log.splitlines()]
    assert lines, "the process logged nothing: the search would prove nothing"
    for secret in _forms():
        assert secret not in log, (secret, [x for x in lines if secret in json.dumps(x)])


def test_a_log_line_keeps_a_urls_host_and_masks_its_credentials() -> None:
    """The scrub every written line goes through (shared.logging.redact)."""
    assert (
        redact('HTTP Request: POST https://hooks.slack.com/services/T/B/x "HTTP/1.1 200 OK"')
        == 'HTTP Request: POST https://hooks.slack.com/******** "HTTP/1.1 200 OK"'
    )
    assert (
        redact("http://u:p@sms.example:8080/send?k=1")
        == "http://********@sms.example:8080/********"
    )
    assert redact("jsons://probe:pw@ntfy.example/topic") == "jsons://********@ntfy.example/********"
    assert redact("Authorization: GenieKey abc") == "Authorization: GenieKey ********"
    assert redact("{'authorization': 'Bearer eyJ.x'}") == "{'authorization': 'Bearer ********'}"
    assert redact("Uvicorn running on http://127.0.0.1:8000") == (
        "Uvicorn running on http://127.0.0.1:8000"
    )
    assert redact("token endpoint refused") == "token endpoint refused"
