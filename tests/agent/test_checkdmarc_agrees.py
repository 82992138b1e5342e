"""Mail DNS's and readiness's verdicts compared with checkdmarc's (an independent DMARC and SPF
implementation) on the same zones, served by our own DNS server on loopback
(tests/agent/test_side_checks_agree.py's ZONES). checkdmarc runs in a network namespace of its
own (`unshare -n`, tests/agent/checkdmarc_child.py) whose only interface is its loopback, with
that server as its one nameserver: a query to any other address fails at once and fails this
test, and nothing leaves the machine.

Compared per zone: whether a DMARC record applies, where, with which policy, whether the
record in force has a fault; whether the domain publishes SPF and whether it is valid. Every
difference is listed in DIFFERENCES with the RFC's words for why mailprobe reads it so
(docs/alerts.md "One rule per fact"); a new difference, or one that is gone, fails."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.sidechecks.mail_dns import rules as mail_dns_rules
from controller.sidechecks.readiness import rules as readiness_rules
from tests.agent.test_side_checks_agree import ZONES, Judged, _judged, _raised

ROOT = Path(__file__).resolve().parents[2]
SPF_FAULTS = ("spf_invalid", "spf_include_broken", "spf_lookup_limit", "spf_void_lookups")

# (zone, fact) → why mailprobe's reading differs from checkdmarc's.
DIFFERENCES = {
    ("two DMARC records of its own, the Organizational Domain's above", "dmarc_applies"): (
        "RFC 9989 4.10, step 2: several DMARC records at one name are all discarded, as if none "
        "were there, so the walk goes on to the name above; checkdmarc stops there with an error"
    ),
    ("a TXT record that only looks like SPF", "spf_valid"): (
        'RFC 7208 12: version = "v=spf1", an ABNF literal, which RFC 5234 2.3 makes case-'
        'insensitive; checkdmarc refuses "V=SPF1"'
    ),
}


def _checkdmarc(zones: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """checkdmarc's verdicts per zone, from a namespace where only loopback exists."""
    given = {
        case: (domain, [[name, rdtype, texts] for (name, rdtype), texts in records.items()])
        for case, (domain, records) in zones.items()
    }
    python = ROOT / ".venv-checkdmarc" / "bin" / "python"  # `make test` makes it (Makefile)
    assert python.exists(), (
        f"{python} is missing: `make test` (or `make .venv-checkdmarc/.installed`)"
    )
    child = f"ip link set lo up && exec {python} -m tests.agent.checkdmarc_child"
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", child],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=240,
        check=False,
    )
    if (
        done.returncode != 0
        and "unshare" in done.stderr
        and "Operation not permitted" in done.stderr
    ):
        pytest.skip("a network namespace needs root (unshare --net): " + done.stderr.strip())
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _mailprobe(domain: str, j: Judged) -> dict[str, object]:
    """Mail DNS's and readiness's verdicts of one zone, as the facts compared."""
    walked = mail_dns_rules.applying(j.mail_dns)
    record = readiness_rules.readings(j.readiness)["dmarc"]
    return {
        "dmarc_applies": record != "",
        "dmarc_location": walked.policy_at if walked is not None and record else None,
        "dmarc_fault": bool(_raised(j.verdicts, "dmarc_invalid")),
        "dmarc_policy": walked.policy if walked is not None and record else None,
        "spf_published": not _raised(j.verdicts, "spf_missing"),
        "spf_valid": not any(_raised(j.verdicts, code) for code in SPF_FAULTS),
    }


def _theirs(found: dict[str, Any]) -> dict[str, object]:
    dmarc, spf = found["dmarc"], found["spf"]
    several = "Multiple DMARC" in (dmarc["error"] or "")
    applies = dmarc["location"] is not None
    return {
        "dmarc_applies": applies,
        "dmarc_location": dmarc["location"],
        "dmarc_fault": several or (applies and not dmarc["valid"]),
        # checkdmarc names no policy of a record it finds faulty
        "dmarc_policy": dmarc["p"] if dmarc["valid"] else None,
        "spf_published": spf["error"] != "An SPF record does not exist.",
        "spf_valid": spf["valid"],
    }


async def test_mail_dns_and_readiness_read_the_zones_as_checkdmarc_does() -> None:
    theirs = _checkdmarc(ZONES)
    differ: dict[tuple[str, str], tuple[object, object]] = {}
    for case, (domain, records) in sorted(ZONES.items()):
        ours = _mailprobe(domain, await _judged(domain, records))
        other = _theirs(theirs[case])
        if not (ours["dmarc_applies"] and other["dmarc_applies"]):
            ours["dmarc_location"] = other["dmarc_location"] = None
        if ours["dmarc_fault"] or other["dmarc_fault"]:
            ours["dmarc_policy"] = other["dmarc_policy"] = None  # compared by the fault alone
        if not (ours["spf_published"] and other["spf_published"]):
            ours["spf_valid"] = other["spf_valid"] = None
        for fact, value in ours.items():
            if value != other[fact]:
                differ[(case, fact)] = (value, other[fact])
    assert set(differ) == set(DIFFERENCES), differ
