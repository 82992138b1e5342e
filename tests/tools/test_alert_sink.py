"""`make run`'s alert sink: with no relay configured, the controller's own e-mail and SMS
channels deliver into it, each notification prints a console line and `GET /` lists it; a real
relay, when named, is left alone."""

import pytest

from controller.notify import Notification
from controller.notify.email import EmailChannel
from controller.notify.sms import SmsChannel
from controller.settings import ControllerSettings
from shared import embedded
from shared.settings import load
from testkit.serving import http_client
from tools.alertsink import Running, Sink
from tools.devrun import SINK_FROM, sink_env

NOTE = Notification(
    "oncall@customer.test", "[mailprobe] DOWN: Outbound relay", "down since 10:00", None, "k1"
)


async def test_email_and_sms_are_caught_printed_and_listed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = Running(Sink(), embedded.free_port(), 0)
    try:
        env = sink_env({}, running.smtp_port, running.http_port)
        await EmailChannel(env["NOTIFY_SMTP_URL"], env["NOTIFY_FROM"], timeout_s=5).send(NOTE)
        sms = Notification("+4915112345678", "", "DOWN: Outbound relay", None, "k2")
        await SmsChannel(env["NOTIFY_SMS_WEBHOOK_URL"], timeout_s=5).send(sms)
        async with http_client() as client:
            listed = (await client.get(f"http://127.0.0.1:{running.http_port}/")).json()
            bad = await client.post(f"http://127.0.0.1:{running.http_port}/sms", content=b"[]")
    finally:
        running.stop()
    out = capsys.readouterr().out
    assert "[alert sink] email to oncall@customer.test: [mailprobe] DOWN: Outbound relay" in out
    assert "[alert sink] sms to +4915112345678: DOWN: Outbound relay" in out
    sms_item, mail_item = listed["messages"]  # newest first
    assert (sms_item["channel"], sms_item["to"]) == ("sms", "+4915112345678")
    assert mail_item["channel"] == "email" and mail_item["subject"] == NOTE.subject
    assert mail_item["text"].strip() == "down since 10:00"
    assert bad.status_code == 400


def test_the_sink_takes_only_the_channels_left_unset_and_settings_accept_it() -> None:
    both = sink_env({}, 2525, 8025)
    assert both == {
        "NOTIFY_SMTP_URL": "smtp://127.0.0.1:2525",
        "NOTIFY_FROM": SINK_FROM,
        "NOTIFY_SMS_WEBHOOK_URL": "http://127.0.0.1:8025/sms",
    }
    settings = load(
        ControllerSettings, {"DATABASE_URL": "postgresql://x/y", "SECRETS_KEY": "", **both}
    )
    assert settings.notify.notify_smtp_url == "smtp://127.0.0.1:2525"
    relay = {"NOTIFY_SMTP_URL": "smtp://relay.example:587", "NOTIFY_FROM": "a@example.com"}
    assert sink_env(relay, 2525, 8025) == {"NOTIFY_SMS_WEBHOOK_URL": "http://127.0.0.1:8025/sms"}
    assert sink_env({**relay, "NOTIFY_SMS_WEBHOOK_URL": "https://sms.example/hook"}, 1, 2) == {}
