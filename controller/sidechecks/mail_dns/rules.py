"""Mail DNS rules, pure: what one country's agent resolved for the monitor's mail domain
(`MailDns`) and the TLS it saw on the same round → verdicts on the mail DNS findings.

A list the agent could not resolve (null) judges nothing, so a resolver outage neither raises
nor clears a finding; only what was answered is judged. MX and MTA-STS are about where mail for
the domain goes, so they are judged for SMTP monitors only; whether the MX names the host only
for a monitor of port 25 (`MX_PORT`), where mail for the domain arrives: a submission server
(587, 465) is no MX and need not be named. TLSA records are judged only when
the agent's resolver vouched for them (the AD bit): unsigned records prove nothing, so they are
"unverified", never a finding. DMARC is missing only when no record applies by the Tree Walk
(RFC 9989 4.10, shared/sidechecks/dmarc_tree.py, as readiness judges it): a subdomain under
its Organizational Domain's record has one. A record is read as readiness reads it
(shared/sidechecks/dmarc_record.py); a fault in it names the policy receivers apply then.
"""

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from controller.sidechecks.findings import INBOUND, SENDING, Verdicts, declare, domain_facts, judge
from shared.guards import BrokenInvariant
from shared.sidechecks import dmarc_record, dmarc_tree, spf_syntax
from shared.sidechecks.dmarc_tree import Walked
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.readiness import DmarcLookup

if TYPE_CHECKING:  # read, never made, here
    from controller.posture.facts import Observation

CODES: Final = declare(
    {
        "mx_mismatch": (
            "warning",
            "The domain's MX records do not name the monitored host, so mail for the domain goes "
            "elsewhere (or nowhere, without MX). Publish an MX for this host, or monitor the host "
            "the MX names.",
        ),
        "spf_missing": (
            "warning",
            "The domain publishes no SPF record, so receivers cannot tell its servers from "
            "forgers. Publish one TXT record `v=spf1 ... -all` listing the servers that send its "
            "mail.",
        ),
        "spf_invalid": (
            "warning",
            "The domain's SPF is not one valid record (two records, or a term receivers reject): "
            "they treat it as a permanent error. Merge into one record and fix the term named.",
        ),
        "dmarc_missing": (
            "warning",
            "The domain publishes no DMARC record at `_dmarc`, so receivers apply no policy to "
            "mail forging it. Publish `v=DMARC1; p=none; rua=mailto:...`, then tighten p= over "
            "time.",
        ),
        "dmarc_invalid": (
            "warning",
            "The domain's DMARC record has a fault (two records, no p=, or a tag value that does "
            "not parse): receivers discard the records, or the tag, and apply the policy named "
            "(RFC 9989). Fix what is named.",
        ),
        "mta_sts_invalid": (
            "warning",
            "The domain announces MTA-STS, but its `_mta-sts` record or its policy at "
            "https://mta-sts.<domain>/.well-known/mta-sts.txt is missing, unreachable over valid "
            "HTTPS, or malformed, so senders use no policy. Fix what is named.",
        ),
        "mta_sts_mismatch": (
            "critical",
            "The domain's MTA-STS policy does not allow its own MX, or the certificate this host "
            "served does not validate for its name: senders that enforce the policy will not "
            "deliver. Add the MX to the policy's mx lines, or install a valid certificate.",
        ),
        "tlsa_mismatch": (
            "critical",
            "The DNSSEC-signed TLSA records (DANE) of this host match no certificate it served: "
            "DANE-validating senders will not deliver. Publish a TLSA record for the current key "
            "before rolling certificates, then remove the old one.",
        ),
        "tls_rpt_missing": (
            "info",
            "The domain publishes no TLS-RPT record at `_smtp._tls`, so senders cannot report "
            "failed TLS deliveries to it. Publish `v=TLSRPTv1; rua=mailto:...`.",
        ),
    }
)
# The domain's records, read alike by every monitor naming it (issue 80: one fact, one notice
# per recipient); the MX, MTA-STS and TLSA findings compare them with the monitor's own host.
DOMAIN_FACTS: Final = domain_facts(
    {
        "spf_missing": SENDING,
        "spf_invalid": SENDING,
        "dmarc_missing": SENDING,
        "dmarc_invalid": SENDING,
        "mta_sts_invalid": INBOUND,
        "tls_rpt_missing": INBOUND,
    }
)

MX_PORT: Final = 25  # RFC 5321 4.5.4: mail for a domain is delivered to its MX hosts' port 25
STS_MAX_AGE = 31_557_600  # RFC 8461 section 3.2: at most a year
_NAME = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?"
_HOST = re.compile(rf"{_NAME}(\.{_NAME})*\.?")
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")


def mail_dns(
    monitor_type: str,
    hostname: str,
    seen: MailDns,
    tls: "Observation",
    port: int = MX_PORT,
) -> Verdicts:
    """The verdicts of one country's mail DNS facts (`tls`: what that country saw of the
    monitored server on the same round, for MTA-STS and DANE; `port`: the port checked)."""
    v: Verdicts = {}
    cc = tls.country
    host = hostname.lower().rstrip(".")
    smtp = monitor_type == "smtp"
    # A list cut to fit the bound (`truncated`) holds only some records, the last maybe cut:
    # what is there still counts (never "missing"), what it lacks or a cut record's syntax does
    # not, so those findings are left unjudged.
    cut = set(seen.truncated)
    mx = smtp and port == MX_PORT
    if mx and seen.mx is not None and not ("mx" in cut and host not in seen.mx):
        listed = ", ".join(seen.mx) or "none"
        detail = f"MX of {seen.domain}: {listed}; the monitored host {host} is not among them"
        judge(v, "mx_mismatch", cc, host not in seen.mx, detail)
    if seen.spf is not None:
        judge(v, "spf_missing", cc, not seen.spf, f"no SPF record (v=spf1) at {seen.domain}")
        why = spf_syntax.problem(seen.domain, seen.spf)
        if "spf" not in cut or len(seen.spf) > 1:
            judge(v, "spf_invalid", cc, why is not None, f"SPF of {seen.domain}: {why}")
    if seen.dmarc is not None:
        name = f"_dmarc.{seen.domain}"
        walked = applying(seen)
        if seen.dmarc:
            judge(v, "dmarc_missing", cc, False, "")
        elif walked is not None:
            detail = f"no DMARC record at {name} nor above it (RFC 9989 Tree Walk)"
            judge(v, "dmarc_missing", cc, walked.record is None, detail)
        why = _dmarc_fault(seen.domain, seen.dmarc, walked) if seen.dmarc else None
        if "dmarc" not in cut or len(seen.dmarc) > 1:
            judge(v, "dmarc_invalid", cc, why is not None, f"DMARC at {name}: {why}")
    if seen.tls_rpt is not None:
        reporting = any(re.search(r"(^|;)\s*rua\s*=\s*\S", r) for r in seen.tls_rpt)
        detail = f"no TLS-RPT record with rua= at _smtp._tls.{seen.domain}"
        if reporting or "tlsRpt" not in cut:
            judge(v, "tls_rpt_missing", cc, not reporting, detail)
    if seen.mta_sts is not None and not cut & {"mtaSts", "mtaStsPolicy"}:
        _mta_sts(v, cc, smtp, host, seen, tls)
    if seen.tlsa and seen.tlsa_dnssec:
        matched = tlsa_matches(seen.tlsa, tls)
        if matched is not None and (matched or "tlsa" not in cut):
            detail = f"no DNSSEC-signed TLSA record of {host} matches the certificate it served"
            judge(v, "tlsa_mismatch", cc, not matched, detail)
    return v


def applying(seen: MailDns) -> Walked | None:
    """The DMARC record that applies to the domain, by the Tree Walk (RFC 9989 4.10): its own
    one record (the walk's Organizational Domain, "", then not asked for), else what the walk
    above it found; None when not known (no walk: an older agent's facts, or a lookup it
    needed failed)."""
    if seen.dmarc is None:
        return None
    own = DmarcLookup(name=seen.domain, records=seen.dmarc)
    if (record := dmarc_tree.single(own)) is not None:
        mine = dmarc_record.applied(dmarc_record.tags(record))
        return Walked("", seen.domain, mine.get("p") if mine else None, record)
    if seen.dmarc_walk is None:
        return None
    return dmarc_tree.tree_walk(seen.domain, [own, *seen.dmarc_walk])


def _dmarc_fault(domain: str, records: list[str], walked: Walked | None) -> str | None:
    """What is at fault in the domain's DMARC records (several, which receivers discard; or
    the parts of its one record they discard or read otherwise: dmarc_record.faults), with
    the policy receivers apply then; None when nothing is."""
    if len(records) > 1:
        why = f"{len(records)} DMARC records, which receivers discard all of"
    elif found := dmarc_record.faults(records[0]):
        why = "; ".join(found)
    else:
        return None
    return f"{why}: {_applies(domain, walked)}"


def _applies(domain: str, walked: Walked | None) -> str:
    """The policy receivers apply to `domain`, in words, by the Tree Walk."""
    if walked is None:
        return "what receivers apply instead is not known (the names above were not read)"
    said = f"p={walked.policy}" if walked.policy else "no DMARC policy"
    if walked.policy_at is None or walked.policy_at == domain:
        return f"receivers apply {said}"
    return f"receivers apply {said} (the record at _dmarc.{walked.policy_at})"


@dataclass(frozen=True, slots=True)
class StsPolicy:
    mode: str
    mx: tuple[str, ...]
    max_age: int


def parse_policy(text: str) -> StsPolicy | str:
    """The MTA-STS policy (RFC 8461 section 3.2), or why it is not one."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            return f"policy line {line.strip()[:60]!r} is not key: value"
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        return "the policy has no version: STSv1"
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        return "the policy's mode is not enforce, testing or none"
    age = (fields.get("max_age") or [""])[0]
    if not age.isdigit() or int(age) > STS_MAX_AGE:
        return "the policy's max_age is not 0 to 31557600"
    patterns = tuple(p.lower().rstrip(".") for p in fields.get("mx", []))
    if mode != "none" and not patterns:
        return "the policy lists no mx"
    if bad := [p for p in patterns if not _HOST.fullmatch(p.removeprefix("*."))]:
        return f"the policy's mx {bad[0]!r} is not a host name or *.name"
    return StsPolicy(mode, patterns, int(age))


def mx_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """RFC 8461 section 4.1: a pattern names the host, or `*.` stands for its first label."""
    host = host.lower().rstrip(".")
    first, _, rest = host.partition(".")
    return any(p == host or (p.startswith("*.") and p[2:] == rest and first) for p in patterns)


def _mta_sts(
    v: Verdicts, cc: str, smtp: bool, host: str, seen: MailDns, tls: "Observation"
) -> None:
    if seen.mta_sts is None:
        raise BrokenInvariant("rules._mta_sts: seen.mta_sts is unset")
    domain = seen.domain
    if not seen.mta_sts:  # the domain does not use MTA-STS: nothing to be wrong
        judge(v, "mta_sts_invalid", cc, False, "")
        if smtp:
            judge(v, "mta_sts_mismatch", cc, False, "")
        return
    problem: str | None = None
    policy: StsPolicy | None = None
    if len(seen.mta_sts) > 1:
        problem = f"{len(seen.mta_sts)} records at _mta-sts.{domain}; senders then use none"
    elif not _sts_id(seen.mta_sts[0]):
        problem = f"_mta-sts.{domain} has no valid id= (1-32 letters or digits)"
    elif seen.mta_sts_policy is None:
        why = seen.errors.get("mtaStsPolicy", "not fetched")
        problem = f"no policy from https://mta-sts.{domain}/.well-known/mta-sts.txt: {why}"
    else:
        parsed = parse_policy(seen.mta_sts_policy)
        if isinstance(parsed, str):
            problem = parsed
        else:
            policy = parsed
    judge(v, "mta_sts_invalid", cc, problem is not None, f"MTA-STS of {domain}: {problem}")
    if not smtp or problem is not None:
        return  # an invalid policy is no policy: senders ignore it (its own finding)
    if policy is None:
        raise BrokenInvariant("rules._mta_sts: policy is unset")
    wrong: list[str] = []
    enforced = policy.mode != "none"
    outside = [m for m in seen.mx or [] if not mx_allowed(m, policy.mx)]
    if enforced and outside:
        wrong.append(f"MX {', '.join(outside)} not allowed by its mx patterns")
    invalid = tls.chain_verified is False or tls.name_matched is False
    if enforced and mx_allowed(host, policy.mx) and invalid:
        wrong.append(f"the certificate {host} served does not validate for its name")
    detail = f"MTA-STS policy of {domain} ({policy.mode}): {'; '.join(wrong)}"
    judge(v, "mta_sts_mismatch", cc, bool(wrong), detail)


def _sts_id(record: str) -> bool:
    for part in record.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name == "id":
            return bool(_STS_ID.fullmatch(value.strip()))
    return False


def tlsa_matches(records: list[str], tls: "Observation") -> bool | None:
    """Whether a DANE-EE or PKIX-EE record (usage 3 or 1) with a SHA-256 of the certificate
    (selector 0) or of its public key (selector 1) matches what was seen; None when no such
    record or fact is there to compare (trust-anchor records need the chain, not kept)."""
    judged = False
    for record in records:
        parts = record.split()
        if len(parts) != 4 or parts[0] not in ("1", "3") or parts[2] != "1":
            continue
        seen = {"0": tls.cert_sha256, "1": tls.cert_spki_sha256}.get(parts[1])
        if seen is None:
            continue
        judged = True
        if seen.lower() == parts[3].lower():
            return True
    return False if judged else None
