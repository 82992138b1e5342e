"""Reports as large reporters send them, made by the tests: TLS-RPT (RFC 8460 §4.4) as gzip'd
JSON, DMARC aggregate (RFC 7489 appendix C) as zipped or gzip'd XML; and the bad inputs the
parser must refuse."""

import gzip
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

DAY = timedelta(days=1)


def _day(start: datetime | None = None) -> tuple[datetime, datetime]:
    begins = start or (datetime.now(UTC) - DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    return begins, begins + DAY - timedelta(seconds=1)


def tls_json(
    domain: str,
    *,
    reporter: str = "Google LLC",
    report_id: str | None = None,
    failures: list[dict[str, Any]] | None = None,
    successes: int = 5326,
    extra_policy_domain: str | None = None,
    begins: datetime | None = None,
    range_text: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """An RFC 8460 report: an STS policy and a TLSA policy for `domain`, each with its summary
    and failure details (several MX and IPs)."""
    start, end = _day(begins)
    if failures is None:
        failures = [
            {
                "result-type": "certificate-expired",
                "sending-mta-ip": "2001:db8:abcd:12::1",
                "receiving-mx-hostname": f"mx1.{domain}",
                "receiving-ip": "203.0.113.56",
                "failed-session-count": 100,
            },
            {
                "result-type": "starttls-not-supported",
                "sending-mta-ip": "198.51.100.62",
                "receiving-mx-hostname": f"mx2.{domain}",
                "receiving-ip": "203.0.113.57",
                "failed-session-count": 200,
                "additional-information": "https://reports.example/info?id=1#StarttlsNotSupported",
            },
        ]
    policies = [
        {
            "policy": {
                "policy-type": "sts",
                "policy-string": [
                    "version: STSv1",
                    "mode: testing",
                    f"mx: *.{domain}",
                    "max_age: 86400",
                ],
                "policy-domain": domain,
                "mx-host": [f"*.{domain}"],
            },
            "summary": {
                "total-successful-session-count": successes,
                "total-failure-session-count": sum(f["failed-session-count"] for f in failures),
            },
            "failure-details": failures,
        },
        {
            "policy": {
                "policy-type": "tlsa",
                "policy-string": ["3 1 1 0123456789abcdef"],
                "policy-domain": extra_policy_domain or domain,
            },
            "summary": {"total-successful-session-count": 10, "total-failure-session-count": 3},
            "failure-details": [
                {
                    "result-type": "validation-failure",
                    "sending-mta-ip": "198.51.100.62",
                    "receiving-ip": "203.0.113.58",
                    "receiving-mx-hostname": f"mx-backup.{domain}",
                    "failed-session-count": 3,
                    "failure-reason-code": "X509_V_ERR_PROOF_OF_POSSESSION",
                }
            ],
        },
    ]
    s, e = range_text or (start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {
        "organization-name": reporter,
        "date-range": {"start-datetime": s, "end-datetime": e},
        "contact-info": "smtp-tls-reporting@google.example",
        "report-id": report_id or f"{start:%Y-%m-%dT%H:%M:%SZ}_{domain}_{uuid.uuid4().hex}",
        "policies": policies,
    }


def tls_gzip(report: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(report).encode())


def dmarc_xml(
    domain: str,
    *,
    reporter: str = "google.com",
    report_id: str | None = None,
    records: list[tuple[str, int, str, str]] | None = None,
    begin: int | None = None,
    end: int | None = None,
) -> bytes:
    """An RFC 7489 appendix C feedback document; `records`: (source ip, count, dkim, spf) as
    evaluated."""
    start, stop = _day()
    first = begin if begin is not None else int(start.timestamp())
    last = end if end is not None else int(stop.timestamp())
    records = records or [
        ("192.0.2.10", 500, "pass", "pass"),  # the domain's own server
        ("192.0.2.11", 40, "fail", "fail"),  # same network, failing: a misconfigured sender
        ("198.51.100.7", 25, "fail", "fail"),  # never passes: unknown
    ]
    rows = "".join(
        f"""<record><row><source_ip>{ip}</source_ip><count>{n}</count>
<policy_evaluated><disposition>none</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated></row>
<identifiers><header_from>{domain}</header_from></identifiers>
<auth_results><dkim><domain>{domain}</domain><selector>s1</selector><result>{dkim}</result></dkim>
<spf><domain>{domain}</domain><scope>mfrom</scope><result>{spf}</result></spf></auth_results></record>"""
        for ip, n, dkim, spf in records
    )
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <version>1.0</version>
  <report_metadata>
    <org_name>{reporter}</org_name>
    <email>noreply-dmarc-support@google.example</email>
    <report_id>{report_id or uuid.uuid4().int}</report_id>
    <date_range><begin>{first}</begin><end>{last}</end></date_range>
  </report_metadata>
  <policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>
  {rows}
</feedback>""".encode()


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return out.getvalue()


def dmarc_zip(domain: str, **kwargs: Any) -> bytes:
    """As Google sends it: `receiver!domain!begin!end.zip` holding the XML."""
    return zipped(f"google.com!{domain}!1!2.xml", dmarc_xml(domain, **kwargs))


def zip_bomb(
    method: int = zipfile.ZIP_DEFLATED, mib: int = 200, head: bytes = b"<feedback>"
) -> bytes:
    """A zip of one .xml member unpacking to `mib` MiB of a report's first bytes (`head`: a
    DMARC report's) and white space (deflate: about 200 KiB packed for 200 MiB; bzip2 and LZMA:
    far less)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", method) as z,
        z.open("bomb.xml", "w", force_zip64=True) as member,
    ):
        member.write(head)
        block = b" " * (1 << 20)
        for _ in range(mib):
            member.write(block)
    return out.getvalue()


def gzip_bomb() -> bytes:
    return gzip.compress(b" " * (100 << 20), compresslevel=9)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<feedback><report_metadata><org_name>&lol4;</org_name></report_metadata></feedback>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feedback><report_metadata><org_name>&xxe;</org_name></report_metadata></feedback>"""
