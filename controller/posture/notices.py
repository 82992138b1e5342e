"""What a posture notification says (kinds `finding` and `cert_expiry`): built, like incident
notices, only from the monitor's name, type, host and port and what was seen, never a secret."""

from controller.monitors.store import Monitor
from controller.notify.texts import Texts, one_line, target, with_facts
from controller.posture.rules import Finding

# Mail DNS codes start with the name of a record kind, spelt as people write it.
_RECORD_KINDS = {"mx": "MX", "spf": "SPF", "dmarc": "DMARC", "mta sts": "MTA-STS"}
_RECORD_KINDS |= {"tlsa": "TLSA", "tls rpt": "TLS-RPT"}


def title(code: str) -> str:
    text = code.replace("_", " ").replace("1 2", "1.2")
    for kind, spelt in _RECORD_KINDS.items():
        if text.startswith(kind + " "):
            return spelt + text[len(kind) :]
    return text.capitalize()


def finding(monitor: Monitor, f: Finding) -> Texts:
    name = one_line(monitor.name)
    what = title(f.code)
    where = f" from {f.country}" if f.country else ""
    lead = f"{name} ({target(monitor)}): {what}{where}."
    facts = [
        ("Finding", f.code),
        ("Severity", f.severity),
        ("Seen", one_line(f.detail)),
        ("Seen from", f.country or "every country"),
        ("What to do", f.advice),
        ("Monitor", str(monitor.public_id)),
    ]
    sms = f"mailprobe {f.severity}: {name} ({monitor.hostname}): {what}{where}"
    return with_facts(f"[mailprobe] {what}: {name}", lead, facts, sms)


def expiry(monitor: Monitor, days_left: int, threshold: int, cert_sha256: str) -> Texts:
    name = one_line(monitor.name)
    when = f"expires in {days_left} days" if days_left >= 0 else "has expired"
    lead = f"The certificate of {name} ({target(monitor)}) {when}."
    facts = [
        ("Notice", f"{threshold} days before expiry"),
        ("Certificate SHA-256", cert_sha256),
        ("What to do", "Renew it, or check that automatic renewal works."),
        ("Monitor", str(monitor.public_id)),
    ]
    sms = f"mailprobe: the certificate of {name} ({monitor.hostname}) {when}"
    return with_facts(f"[mailprobe] Certificate {when}: {name}", lead, facts, sms)
