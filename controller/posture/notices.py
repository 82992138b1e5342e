"""What a posture notification says (kinds `finding` and `cert_expiry`): built, like incident
notices, only from the monitor's name, type, host and port and what was seen, never a secret."""

import html
from typing import Any

from controller.notify.texts import Texts, one_line
from controller.posture.rules import Finding

_TYPES = {"smtp": "SMTP", "imap": "IMAP", "pop3": "POP3"}


# Mail DNS codes start with the name of a record kind, spelt as people write it.
_RECORD_KINDS = {"mx": "MX", "spf": "SPF", "dmarc": "DMARC", "mta sts": "MTA-STS"}
_RECORD_KINDS |= {"tlsa": "TLSA", "tls rpt": "TLS-RPT"}


def title(code: str) -> str:
    text = code.replace("_", " ").replace("1 2", "1.2")
    for kind, spelt in _RECORD_KINDS.items():
        if text.startswith(kind + " "):
            return spelt + text[len(kind) :]
    return text.capitalize()


def _target(monitor: Any) -> str:
    port = f":{monitor['port']}" if monitor["port"] else ""
    return f"{_TYPES.get(monitor['type'], monitor['type'])} {monitor['hostname']}{port}"


def _texts(subject: str, lead: str, facts: list[tuple[str, str]], sms: str) -> Texts:
    text = lead + "\n\n" + "\n".join(f"{k}: {v}" for k, v in facts) + "\n\n-- mailprobe\n"
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in facts
    )
    body = (
        f"<html><body><p><strong>{html.escape(lead)}</strong></p>"
        f"<table>{rows}</table><p>-- mailprobe</p></body></html>"
    )
    return Texts(subject, text, body, sms[:300])


def finding(monitor: Any, f: Finding) -> Texts:
    name = one_line(monitor["name"])
    what = title(f.code)
    where = f" from {f.country}" if f.country else ""
    lead = f"{name} ({_target(monitor)}): {what}{where}."
    facts = [
        ("Finding", f.code),
        ("Severity", f.severity),
        ("Seen", one_line(f.detail)),
        ("Seen from", f.country or "every country"),
        ("What to do", f.advice),
        ("Monitor", str(monitor["public_id"])),
    ]
    sms = f"mailprobe {f.severity}: {name} ({monitor['hostname']}): {what}{where}"
    return _texts(f"[mailprobe] {what}: {name}", lead, facts, sms)


def expiry(monitor: Any, days_left: int, threshold: int, cert_sha256: str) -> Texts:
    name = one_line(monitor["name"])
    when = f"expires in {days_left} days" if days_left >= 0 else "has expired"
    lead = f"The certificate of {name} ({_target(monitor)}) {when}."
    facts = [
        ("Notice", f"{threshold} days before expiry"),
        ("Certificate SHA-256", cert_sha256),
        ("What to do", "Renew it, or check that automatic renewal works."),
        ("Monitor", str(monitor["public_id"])),
    ]
    sms = f"mailprobe: the certificate of {name} ({monitor['hostname']}) {when}"
    return _texts(f"[mailprobe] Certificate {when}: {name}", lead, facts, sms)
