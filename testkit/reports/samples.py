"""Reports shaped as Google, Microsoft and Yahoo send them (synthetic: written here after the
shape of the reports those providers send, their element order, indentation, names, namespaces
and packing; the addresses are documentation ranges and the counts are made up), for the
hostile-report tests and `python -m bench reports`."""

import gzip
import io
import json
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Sample:
    provider: str
    kind: str  # "tls" or "dmarc"
    data: bytes  # as it arrives (packed)
    rows: int


def _yesterday() -> tuple[int, int]:
    begins = (datetime.now(UTC) - DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(begins.timestamp()), int((begins + DAY).timestamp()) - 1


def _ip(rng: random.Random, i: int) -> str:
    nets = ("192.0.2", "198.51.100", "203.0.113")
    if i < 3 * 254:
        return f"{nets[i % 3]}.{1 + i // 3}"
    return f"2001:db8:{i // 65536:x}:{i % 65536:x}::{rng.randrange(1, 65535):x}"


def _verdicts(rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.8:
        return "pass", "pass"
    if roll < 0.9:
        return "pass", "fail"
    return "fail", "fail"


def google_dmarc(domain: str, records: int, seed: int = 1) -> bytes:
    """Google's: no namespace, two-space indentation, zipped as
    `google.com!domain!begin!end.zip`."""
    rng = random.Random(seed)
    begin, end = _yesterday()
    out = [
        '<?xml version="1.0" encoding="UTF-8" ?>\n<feedback>\n  <report_metadata>\n'
        "    <org_name>google.com</org_name>\n"
        "    <email>noreply-dmarc-support@google.com</email>\n"
        "    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>\n"
        f"    <report_id>{rng.randrange(10**18, 10**19)}</report_id>\n"
        f"    <date_range>\n      <begin>{begin}</begin>\n      <end>{end}</end>\n"
        "    </date_range>\n  </report_metadata>\n  <policy_published>\n"
        f"    <domain>{domain}</domain>\n    <adkim>r</adkim>\n    <aspf>r</aspf>\n"
        "    <p>none</p>\n    <sp>none</sp>\n    <pct>100</pct>\n    <np>none</np>\n"
        "  </policy_published>\n"
    ]
    for i in range(records):
        dkim, spf = _verdicts(rng)
        out.append(
            f"  <record>\n    <row>\n      <source_ip>{_ip(rng, i)}</source_ip>\n"
            f"      <count>{rng.randrange(1, 400)}</count>\n      <policy_evaluated>\n"
            f"        <disposition>none</disposition>\n        <dkim>{dkim}</dkim>\n"
            f"        <spf>{spf}</spf>\n      </policy_evaluated>\n    </row>\n"
            f"    <identifiers>\n      <header_from>{domain}</header_from>\n"
            "    </identifiers>\n    <auth_results>\n      <dkim>\n"
            f"        <domain>{domain}</domain>\n        <result>{dkim}</result>\n"
            "        <selector>google</selector>\n      </dkim>\n      <spf>\n"
            f"        <domain>{domain}</domain>\n        <result>{spf}</result>\n"
            "      </spf>\n    </auth_results>\n  </record>\n"
        )
    out.append("</feedback>\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"google.com!{domain}!{begin}!{end}.xml", "".join(out))
    return buffer.getvalue()


def microsoft_dmarc(domain: str, records: int, seed: int = 2) -> bytes:
    """Microsoft's (Outlook.com): XML Schema namespaces declared, a `<version>`, envelope
    identifiers, gzip'd as `enterprise.protection.outlook.com!domain!begin!end.xml.gz`."""
    rng = random.Random(seed)
    begin, end = _yesterday()
    out = [
        '<?xml version="1.0"?>\n<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        "  <version>1.0</version>\n  <report_metadata>\n"
        "    <org_name>Enterprise Outlook</org_name>\n"
        "    <email>dmarcreport@microsoft.com</email>\n"
        f"    <report_id>{rng.getrandbits(128):032x}</report_id>\n"
        f"    <date_range>\n      <begin>{begin}</begin>\n      <end>{end}</end>\n"
        "    </date_range>\n  </report_metadata>\n  <policy_published>\n"
        f"    <domain>{domain}</domain>\n    <adkim>r</adkim>\n    <aspf>r</aspf>\n"
        "    <p>quarantine</p>\n    <sp>quarantine</sp>\n    <pct>100</pct>\n"
        "    <fo>0</fo>\n  </policy_published>\n"
    ]
    for i in range(records):
        dkim, spf = _verdicts(rng)
        out.append(
            f"  <record>\n    <row>\n      <source_ip>{_ip(rng, i)}</source_ip>\n"
            f"      <count>{rng.randrange(1, 50)}</count>\n      <policy_evaluated>\n"
            f"        <disposition>none</disposition>\n        <dkim>{dkim}</dkim>\n"
            f"        <spf>{spf}</spf>\n      </policy_evaluated>\n    </row>\n"
            f"    <identifiers>\n      <envelope_to>outlook.com</envelope_to>\n"
            f"      <envelope_from>{domain}</envelope_from>\n"
            f"      <header_from>{domain}</header_from>\n    </identifiers>\n"
            f"    <auth_results>\n      <dkim>\n        <domain>{domain}</domain>\n"
            f"        <selector>selector1</selector>\n        <result>{dkim}</result>\n"
            f"      </dkim>\n      <spf>\n        <domain>{domain}</domain>\n"
            f"        <scope>mfrom</scope>\n        <result>{spf}</result>\n      </spf>\n"
            "    </auth_results>\n  </record>\n"
        )
    out.append("</feedback>")
    return gzip.compress("".join(out).encode())


def yahoo_dmarc(domain: str, records: int, seed: int = 3) -> bytes:
    """Yahoo's: the whole document on few lines, a `<version>`, gzip'd."""
    rng = random.Random(seed)
    begin, end = _yesterday()
    out = [
        '<?xml version="1.0"?><feedback><version>1.0</version><report_metadata>'
        "<org_name>Yahoo</org_name><email>dmarchelp@yahooinc.com</email>"
        f"<report_id>{begin}.{rng.randrange(10**5, 10**6)}</report_id>"
        f"<date_range><begin>{begin}</begin><end>{end}</end></date_range>"
        f"</report_metadata><policy_published><domain>{domain}</domain><adkim>r</adkim>"
        "<aspf>r</aspf><p>none</p><pct>100</pct></policy_published>\n"
    ]
    for i in range(records):
        dkim, spf = _verdicts(rng)
        out.append(
            f"<record><row><source_ip>{_ip(rng, i)}</source_ip>"
            f"<count>{rng.randrange(1, 20)}</count><policy_evaluated>"
            f"<disposition>none</disposition><dkim>{dkim}</dkim><spf>{spf}</spf>"
            f"</policy_evaluated></row><identifiers><header_from>{domain}</header_from>"
            f"</identifiers><auth_results><dkim><domain>{domain}</domain>"
            f"<selector>s2048</selector><result>{dkim}</result></dkim><spf>"
            f"<domain>{domain}</domain><result>{spf}</result></spf></auth_results></record>\n"
        )
    out.append("</feedback>")
    return gzip.compress("".join(out).encode())


def _tls(organization: str, contact: str, report_id: str, domain: str, failures: int) -> bytes:
    rng = random.Random(failures)
    begin, _ = _yesterday()
    start = datetime.fromtimestamp(begin, UTC)
    details = [
        {
            "result-type": rng.choice(
                ("certificate-expired", "starttls-not-supported", "validation-failure")
            ),
            "sending-mta-ip": _ip(rng, i),
            "receiving-mx-hostname": f"mx{i % 3 + 1}.{domain}",
            "receiving-ip": f"203.0.113.{i % 250 + 1}",
            "failed-session-count": rng.randrange(1, 30),
        }
        for i in range(failures)
    ]
    report = {
        "organization-name": organization,
        "date-range": {
            "start-datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end-datetime": (start + DAY - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "contact-info": contact,
        "report-id": report_id,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": [
                        "version: STSv1",
                        "mode: enforce",
                        f"mx: *.{domain}",
                        "max_age: 604800",
                    ],
                    "policy-domain": domain,
                    "mx-host": [f"*.{domain}"],
                },
                "summary": {
                    "total-successful-session-count": rng.randrange(100, 50_000),
                    "total-failure-session-count": sum(
                        d["failed-session-count"]  # type: ignore[misc]
                        for d in details
                    ),
                },
                "failure-details": details,
            }
        ],
    }
    return gzip.compress(json.dumps(report, separators=(",", ":")).encode())


def google_tls(domain: str, failures: int) -> bytes:
    """Google's: one line of JSON, gzip'd (`application/tlsrpt+gzip`)."""
    begin, _ = _yesterday()
    day = datetime.fromtimestamp(begin, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _tls("Google Inc.", "smtp-tls-reporting@google.com", f"{day}_{domain}", domain, failures)


def microsoft_tls(domain: str, failures: int, seed: int = 5) -> bytes:
    """Microsoft's: a GUID for a report id."""
    rid = f"{random.Random(seed).getrandbits(128):032x}"
    return _tls("Microsoft Corporation", "tlsrpt-noreply@microsoft.com", rid, domain, failures)


MAKERS: dict[str, tuple[str, Callable[[str, int], bytes]]] = {
    "Google DMARC": ("dmarc", google_dmarc),
    "Microsoft DMARC": ("dmarc", microsoft_dmarc),
    "Yahoo DMARC": ("dmarc", yahoo_dmarc),
    "Google TLS-RPT": ("tls", google_tls),
    "Microsoft TLS-RPT": ("tls", microsoft_tls),
}


def everyday(domain: str) -> list[Sample]:
    """One of each, of the size a small domain gets daily (a few to a few dozen rows)."""
    sizes = {"Google DMARC": 40, "Microsoft DMARC": 12, "Yahoo DMARC": 5}
    sizes |= {"Google TLS-RPT": 3, "Microsoft TLS-RPT": 2}
    return [
        Sample(name, kind, make(domain, sizes[name]), sizes[name])
        for name, (kind, make) in MAKERS.items()
    ]
