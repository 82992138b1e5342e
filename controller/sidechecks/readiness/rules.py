"""Readiness rules, pure: what one country's agent found of a mail domain (`Readiness`) and how
the monitor logs in → verdicts on what receivers enforce beyond a record being there.

- SPF (RFC 7208 4.6.4): more than 10 DNS-querying terms over the include tree, an include or
  redirect loop, or an `mx` of more than 10 names is a permanent error (`spf_lookup_limit`,
  with the count and the path through the tree that spends most); more than 2 void lookups
  (`spf_void_lookups`); `+all` or `?all` ending evaluation, no `all` at all, which ends it
  as `?all` does, or a term of CIDR length 0 matching every sender (`spf_too_permissive`); `ptr`
  (`spf_ptr`, RFC 7208 5.5: do not use); an include of a domain without an SPF record, or
  a record below the domain's that does not parse (`spf_include_broken`; the domain's own
  record is the mail DNS side check's `spf_invalid`).
- DMARC (RFC 9989): the policy that applies and the Organizational Domain, found by the DNS
  Tree Walk and `psd` (`dmarc_walk`); `p=none` for a domain that sends, or a record RFC 9989
  4.10.1 reads as none (a `p`, `sp` or `np` that is not a policy), or `p=quarantine` with
  `t=y`, which receivers apply one level below (`dmarc_policy_none`); `np`
  weaker than `sp` or `p` for the Organizational Domain's subdomains (`dmarc_np_weaker`);
  `pct`, `rf`, `ri`, which RFC 9989 dropped (`dmarc_obsolete_tags`); report destinations
  outside the Organizational Domain without their `_report._dmarc` authorization, or whose
  authorization moves the reports to another host (RFC 9990, "Verifying External
  Destinations"; RFC 7489 7.1: `dmarc_external_rua_unauthorized`), judged for the record that
  applies and every one of its `rua` and `ruf` destinations.
- DKIM keys of the selectors read: RSA under 2048 bits (`dkim_key_weak`; under 1024 receivers
  refuse it, RFC 8301), or an `h=` that leaves out sha256 (`dkim_key_weak`: RFC 8301 refuses
  rsa-sha1), `t=y` (`dkim_testing`), a revoked or missing key the round trip's own
  message was signed with (`dkim_revoked`).
- A password login to Microsoft 365 or Google (`basic_auth_retiring`), told by the host's name,
  the domain's MX names or the server's greeting.

A part the agent could not read (`error`, a walk cut short) judges nothing; a round whose
resolver failed its canaries judges nothing of DNS (`believed`).
"""

import base64
import binascii
import contextlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

from controller.sidechecks.dns_canary import resolver_health
from controller.sidechecks.findings import SENDING, Verdicts, declare, domain_facts, judge
from shared.dns_canary import DnsCanary
from shared.sidechecks import dmarc_record
from shared.sidechecks.dmarc_record import POLICIES
from shared.sidechecks.dmarc_tree import Walked, tree_walk
from shared.sidechecks.readiness import Change, DkimKey, Dmarc, Readiness, Spf
from shared.sidechecks.readiness import record_tags as tags

LOOKUP_LIMIT: Final = 10
VOID_LIMIT: Final = 2
RSA_REFUSED: Final = 1024  # RFC 8301 3.2: verifiers MUST NOT accept smaller keys
RSA_STRONG: Final = 2048  # RFC 8301 3.2: signers SHOULD use at least 2048 bits

MICROSOFT_DATE: Final = (
    "Microsoft turns SMTP AUTH Basic authentication off by default for existing Microsoft 365"
    " tenants from the end of December 2026 (message center MC786329, updated 27 January 2026):"
    " administrators can turn it back on until a final removal date Microsoft will announce in"
    " the second half of 2027; IMAP and POP password logins are already off"
)
GOOGLE_DATE: Final = (
    "Google Workspace has turned off password sign-in for third-party mail apps (less secure"
    " apps) since March 2025; only app passwords and OAuth2 remain"
)

CODES: Final = declare(
    {
        "spf_lookup_limit": (
            "critical",
            "Receivers return a permanent error (SPF permerror) for senders matched past the "
            "10th DNS-querying term of your SPF include tree (RFC 7208 4.6.4), and Gmail and "
            "Outlook reject such mail. Remove includes you no longer use, replace `a`/`mx` "
            "terms with `ip4`/`ip6`, or ask the vendor whose include spends most (the path "
            "shown) for a smaller one.",
        ),
        "spf_void_lookups": (
            "warning",
            "More than two terms of your SPF tree look up names that do not exist or have no "
            "records (void lookups); receivers return a permanent error past two (RFC 7208 "
            "4.6.4). Remove the terms naming them.",
        ),
        "spf_too_permissive": (
            "warning",
            "Your SPF record ends with `+all` or `?all` (or with no `all`, which receivers "
            "read as `?all`), so it authorizes (or says nothing against) every sender on the "
            "Internet. End it with `~all` or `-all`.",
        ),
        "spf_ptr": (
            "info",
            "Your SPF tree uses `ptr`, which RFC 7208 5.5 says not to use: it is slow, "
            "unreliable, and some receivers ignore it. Replace it with `ip4`/`ip6` or `a`.",
        ),
        "spf_include_broken": (
            "warning",
            "A term of your SPF tree is a permanent error whatever the sender: an include of "
            "a domain without an SPF record (or with two), or a term that does not parse. "
            "Remove or fix it.",
        ),
        "dmarc_policy_none": (
            "warning",
            "The DMARC policy that applies to your domain is p=none (or p=quarantine with "
            "t=y, which receivers apply as none) while the domain sends mail: receivers take "
            "no action on mail forged in your name, and Gmail and Yahoo ask bulk senders for "
            "enforcement. Once your reports show your own mail aligned, move to "
            "p=quarantine, then p=reject, without t=y.",
        ),
        "dmarc_np_weaker": (
            "warning",
            "Your Organizational Domain's DMARC record asks less for subdomains that do not "
            "exist (np=) than for those that do: mail forged from a made-up subdomain "
            "(anything.example.com) is treated more leniently than the rest (RFC 9989). Set "
            "np= to at least the sp= or p= policy, or remove it.",
        ),
        "dmarc_obsolete_tags": (
            "warning",
            "Your DMARC record uses tags RFC 9989 dropped (pct, rf, ri): receivers following "
            "it ignore them, so a pct below 100 no longer softens your policy. Remove them; "
            "use t=y to test a policy.",
        ),
        "dmarc_external_rua_unauthorized": (
            "warning",
            "A report destination of your DMARC record is outside your organization and has "
            "not authorized your reports (no `<your domain>._report._dmarc.<its domain>` TXT "
            "record, RFC 9990), so receivers send it nothing. Ask the report "
            "provider to publish it, or remove the address.",
        ),
        "dkim_key_weak": (
            "warning",
            "A DKIM key is an RSA key under 2048 bits, or allows SHA-1 alone (h=sha1): "
            "receivers refuse signatures by keys under 1024 bits and rsa-sha1 signatures "
            "(RFC 8301), and rate 1024-bit keys as weak. Publish a 2048-bit key without h= "
            "(or with h=sha256) under a new selector, sign with it, then revoke the old one.",
        ),
        "dkim_testing": (
            "warning",
            "A DKIM key still says t=y (testing): receivers may treat its signatures as "
            "unsigned mail. Remove t=y once signing works.",
        ),
        "dkim_revoked": (
            "critical",
            "The round trip's message was signed with a DKIM selector whose key is revoked "
            "(p= empty) or not published: receivers fail its DKIM, and with it DMARC where "
            "SPF does not align. Sign with a published key, or publish the key again.",
        ),
        "basic_auth_retiring": (
            "warning",
            "This monitor logs in with a password to a Microsoft 365 or Google server. "
            "Microsoft is turning SMTP AUTH password logins off (the date is in the detail), "
            "and the check will start failing then. Google refuses account passwords from "
            "mail apps already; a login that works there uses an app password, which Google "
            "discourages. Switch the monitor to an OAuth2 login (mailprobe's `mechanism: "
            "XOAUTH2` with a device-code grant, docs/oauth2.md).",
        ),
    }
)
# The domain's records, read alike by every monitor naming it (issue 80: one fact, one notice
# per recipient); `dkim_revoked` (a round trip's own message) and `basic_auth_retiring` (how the
# monitor logs in) are the monitor's own.
DOMAIN_FACTS: Final = domain_facts(
    dict.fromkeys(set(CODES) - {"dkim_revoked", "basic_auth_retiring"}, SENDING)
)

_SENDS_NOTHING = re.compile(r"^v=spf1\s+-all\s*$", re.IGNORECASE)


def believed(canaries: Sequence[DnsCanary] | None) -> bool:
    """Whether a round's DNS answers may be judged (controller.sidechecks.dns_canary: every
    canary answered as it must; none configured, believed as from agents without them)."""
    return resolver_health(canaries).believed


def readiness(facts: Readiness, cc: str, at: datetime | None = None) -> Verdicts:
    """The DNS verdicts of one country's facts of the round scheduled `at` (none when its
    resolver is not believed); drift and key age only with `at`."""
    v: Verdicts = {}
    if not facts.domain or not believed(facts.canaries):
        return v
    if facts.spf is not None:
        _spf(v, cc, facts.domain, facts.spf)
    if facts.dmarc is not None:
        _dmarc(v, cc, facts.domain, facts.dmarc, _sends(facts))
    _dkim(v, cc, facts.domain, facts.dkim)
    if at is not None:
        _drift(v, cc, facts.domain, facts, at)
    return v


# --- SPF ---------------------------------------------------------------------------------


def spf_path(spf: Spf) -> str:
    """The path through the include tree that spends most lookups: from the domain's record,
    each step the child whose subtree counts most, with each subtree's count."""
    nodes = spf.nodes
    if not nodes:
        return ""
    totals = [n.lookups for n in nodes]
    for i in range(len(nodes) - 1, 0, -1):  # children come after their parent
        if 0 <= nodes[i].parent < i:
            totals[nodes[i].parent] += totals[i]
    steps, at = [], 0
    while True:
        n = nodes[at]
        steps.append(f"{n.via + ':' if n.via else ''}{n.domain} ({totals[at]})")
        children = [i for i in range(at + 1, len(nodes)) if nodes[i].parent == at]
        if not children:
            return " → ".join(steps)
        at = max(children, key=lambda i: totals[i])


def _spf(v: Verdicts, cc: str, domain: str, spf: Spf) -> None:
    if spf.record is None:
        return  # no SPF record: the mail DNS side check tells that
    over = spf.lookups > LOOKUP_LIMIT or bool(spf.loop) or bool(spf.mx_over)
    if over or spf.complete:
        detail = f"{spf.lookups} DNS lookups (limit {LOOKUP_LIMIT}"
        detail += ")" if spf.complete else "; at least: the walk was cut short)"
        if spf.loop:
            detail = f"an include loop: {' → '.join(spf.loop)}"
        elif spf.mx_over:
            detail = f"more than 10 MX names for mx:{', '.join(spf.mx_over)}"
        path = spf_path(spf)
        judge(v, "spf_lookup_limit", cc, over, f"SPF of {domain}: {detail}; path: {path}")
    if spf.void > VOID_LIMIT or spf.complete:
        names = ", ".join(spf.void_names)
        detail = f"SPF of {domain}: {spf.void} void lookups (limit {VOID_LIMIT}): {names}"
        judge(v, "spf_void_lookups", cc, spf.void > VOID_LIMIT, detail)
    # No `all` and no redirect ends a record that is no permanent error as `?all` would
    # (RFC 7208 4.7: neutral).
    neutral = spf.complete and not spf.all and not spf.broken and not spf.loop
    # A term of CIDR length 0 matches every sender of its family, as `+all` (or `?all`) does
    # unless its qualifier fails them.
    wide = [t for t in spf.everyone if t[:1] not in ("-", "~")]
    if spf.complete or spf.all in ("+all", "?all") or wide:
        ends = spf.all or "no all term"
        if neutral:
            ends += " (neutral for every other sender, as ?all: RFC 7208 4.7)"
        detail = f"the SPF of {domain} ends with {ends}"
        if wide:
            detail = f"the SPF of {domain} matches every sender with {', '.join(wide)}"
        permissive = neutral or spf.all in ("+all", "?all") or bool(wide)
        judge(v, "spf_too_permissive", cc, permissive, detail)
    if spf.complete or spf.ptr:
        judge(v, "spf_ptr", cc, spf.ptr, f"the SPF tree of {domain} uses ptr")
    # The domain's own record (two of them, or one that does not parse) is judged once, by
    # the mail DNS side check (`spf_invalid`); the walk stops there, so nothing below is known.
    if spf.broken.startswith((f"{domain} has ", f"{domain}: ")):
        return
    if spf.complete or spf.broken:
        judge(v, "spf_include_broken", cc, bool(spf.broken), f"SPF of {domain}: {spf.broken}")


def _sends(facts: Readiness) -> bool:
    """Whether the domain sends mail as far as its records say: an SPF record that
    authorizes someone, or a DKIM key that is not revoked."""
    spf = facts.spf
    if spf is not None and spf.record is not None and not _SENDS_NOTHING.match(spf.record):
        return True
    return any(k.record is not None and not k.revoked for k in facts.dkim)


# --- DMARC -------------------------------------------------------------------------------


def _dmarc(v: Verdicts, cc: str, domain: str, dmarc: Dmarc, sends: bool) -> None:
    walked = tree_walk(domain, dmarc.walk)
    if walked is None or walked.record is None:
        return  # not known, or no record: the mail DNS side check tells a missing one
    where = f"_dmarc.{walked.policy_at} (Organizational Domain {walked.organizational})"
    t = dmarc_record.tags(walked.record)
    applied = under_test(walked.policy, t)
    said = f"p={walked.policy}" if walked.policy else "no policy (p, sp or np not a policy)"
    if applied != walked.policy:
        said += f" with t=y (a policy under test: receivers apply {applied})"
    judge(
        v,
        "dmarc_policy_none",
        cc,
        sends and applied in ("none", None),
        f"the policy that applies to {domain} is {said}, from {where}",
    )
    _nonexistent(v, cc, walked)
    dropped = [f"{k}={t[k]}" for k in ("pct", "rf", "ri") if k in t]
    judge(v, "dmarc_obsolete_tags", cc, bool(dropped), f"{where}: {', '.join(dropped)}")
    if dmarc.reports_for != walked.policy_at:
        return  # destinations of another record (an older agent's): not known for this one
    unknown = dmarc.unchecked > 0 or any(r.authorized is None for r in dmarc.reports)
    outside = [r for r in dmarc.reports if r.authorized is False]
    if outside or not unknown:
        detail = "; ".join(
            f"{r.uri}: {r.why or f'no {walked.policy_at}._report._dmarc.{r.host}'}" for r in outside
        )
        if dmarc.unchecked:
            detail += f"; {dmarc.unchecked} more external destinations not checked"
        judge(v, "dmarc_external_rua_unauthorized", cc, bool(outside), detail)


def under_test(policy: str | None, t: Mapping[str, str]) -> str | None:
    """The policy receivers apply for `policy` asked by a record of tags `t`: with `t=y` (the
    Domain Owner is testing it, RFC 9989 4.7) one level below, reject → quarantine → none."""
    if policy not in POLICIES or t.get("t", "n").lower() != "y":
        return policy
    return POLICIES[max(0, POLICIES.index(policy) - 1)]


def _nonexistent(v: Verdicts, cc: str, walked: Walked) -> None:
    """`np`, the policy for the Organizational Domain's subdomains that do not exist, weaker
    than the one for those that do (`sp`, else `p`)."""
    np, sp = walked.nonexistent, walked.subdomains
    weaker = np is not None and sp is not None and POLICIES.index(np) < POLICIES.index(sp)
    detail = (
        f"_dmarc.{walked.parent_at}: np={np} for subdomains that do not exist, {sp} for the others"
    )
    judge(v, "dmarc_np_weaker", cc, weaker, detail if weaker else "")


# --- DKIM --------------------------------------------------------------------------------


def _dkim(v: Verdicts, cc: str, domain: str, keys: Sequence[DkimKey]) -> None:
    unknown = any(k.error and k.record is None for k in keys)
    read = [k for k in keys if k.record is not None]
    weak = [
        k
        for k in read
        if k.key_type == "rsa" and k.bits is not None and k.bits < RSA_STRONG and not k.revoked
    ]
    sha1 = [(k, h) for k in read if not k.revoked and (h := _sha1_only(k)) is not None]
    if weak or sha1 or not unknown:
        detail = "; ".join(
            [
                f"{k.selector}._domainkey.{domain}: RSA {k.bits} bits"
                + (" (refused by receivers)" if k.bits is not None and k.bits < RSA_REFUSED else "")
                for k in weak
            ]
            + [
                f"{k.selector}._domainkey.{domain}: h={h} allows no SHA-256 (receivers refuse"
                " rsa-sha1)"
                for k, h in sha1
            ]
        )
        judge(v, "dkim_key_weak", cc, bool(weak or sha1), detail)
    signing = [k for k in keys if k.signing]
    dead = [k for k in signing if k.revoked or (k.record is None and not k.error)]
    # a signing key not read, or read but not understood (`error`), leaves it unknown
    if dead or (signing and not any(k.error for k in signing)):
        detail = "; ".join(
            f"{k.selector}._domainkey.{domain}: "
            + ("revoked (p= empty)" if k.revoked else "no key published")
            for k in dead
        )
        judge(v, "dkim_revoked", cc, bool(dead), f"signed with {detail}")
    testing = [k for k in read if k.testing and k.record is not None]
    if testing or not unknown:
        detail = ", ".join(f"{k.selector}._domainkey.{domain}" for k in testing)
        judge(v, "dkim_testing", cc, bool(testing), f"t=y at {detail}")


def _sha1_only(key: DkimKey) -> str | None:
    """The key's `h=` (the hash algorithms it may verify, RFC 6376 3.6.1) when it leaves out
    sha256, the one receivers accept (RFC 8301 3.1: rsa-sha1 MUST NOT be used for verifying);
    None when it allows sha256 or says nothing (all allowed)."""
    h = tags(key.record or "").get("h")
    if h is None or "sha256" in [a.strip().lower() for a in h.split(":")]:
        return None
    return h


# --- The Basic-auth cliff ----------------------------------------------------------------

MICROSOFT_HOSTS: Final = ("office365.com", "outlook.com", "office.com", "microsoft.com")
# Exchange Online's MX names: the older namespace, and the DNSSEC-signed one new accepted
# domains are provisioned in (`<domain>.<zone>.mx.microsoft`).
MICROSOFT_MX: Final = ("mail.protection.outlook.com", "mx.microsoft")
# Exchange Online's servers greet with their own names (`….outlook.office365.com`,
# `….prod.outlook.com`); the product's words ("Microsoft ESMTP MAIL Service", "The Microsoft
# Exchange IMAP4 service is ready") are Exchange Server's defaults, on premises too, where
# password logins stay.
MICROSOFT_GREETING_HOSTS: Final = ("outlook.com", "office365.com")
_GREETING_HOST: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+", re.IGNORECASE)
# Exchange's IMAP and POP greetings name their server as base64 of UTF-16LE, in brackets.
_GREETING_B64: Final = re.compile(r"\[([A-Za-z0-9+/]{4,340}={0,2})\]")


def _greeting_hosts(greeting: str) -> list[str]:
    """The host names a server's greeting names: as written, or base64-encoded (Exchange)."""
    named = _GREETING_HOST.findall(greeting)
    for token in _GREETING_B64.findall(greeting):
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            named += _GREETING_HOST.findall(base64.b64decode(token).decode("utf-16-le"))
    return named


GOOGLE_HOSTS: Final = ("gmail.com", "googlemail.com", "google.com")
GOOGLE_MX: Final = ("google.com", "googlemail.com")
GOOGLE_GREETING: Final = re.compile(r"\bgsmtp\b|Gimap ready|\bgpop\b", re.IGNORECASE)


def _under(name: str, suffixes: Sequence[str]) -> bool:
    name = name.lower().rstrip(".")
    return any(name == s or name.endswith(f".{s}") for s in suffixes)


def provider(hostname: str, mx: Sequence[str] | None, banner: str | None) -> str | None:
    """ "microsoft" or "google" when the server logged in to is theirs, by its name, the mail
    domain's MX names, or its greeting (Google's servers' own words; a Microsoft host it
    names); None otherwise."""
    greeting = banner or ""
    named = _greeting_hosts(greeting)
    if _under(hostname, MICROSOFT_HOSTS) or any(_under(n, MICROSOFT_GREETING_HOSTS) for n in named):
        return "microsoft"
    if _under(hostname, GOOGLE_HOSTS) or GOOGLE_GREETING.search(greeting):
        return "google"
    if greeting:
        return None  # another server greeted: the domain's MX says nothing of this one
    if mx and all(_under(m, MICROSOFT_MX) for m in mx):
        return "microsoft"
    if mx and all(_under(m, GOOGLE_MX) for m in mx):
        return "google"
    return None


def basic_auth(
    logins: Sequence[tuple[str, str]], mx: Sequence[str] | None, banner: str | None, cc: str
) -> Verdicts:
    """The verdict on a monitor's password logins: `logins` (what logs in, its host), e.g.
    ("SMTP AUTH", "smtp.office365.com"); `banner` is the greeting of the first one's host
    (the one the core check connects to; None when the round read none), `mx` the mail
    domain's MX names.

    The first login's server is told by its name or its greeting: a round that read no
    greeting of a server its name does not tell leaves it unknown (the MX would say the
    domain's mail host, which an on-premises relay is not, and the finding would come and go
    with the server's outages). The others (a round trip's mailbox, whose greeting the round
    does not carry) are told by name or the domain's MX (unknown without it: a round whose
    domain was not asked, or whose resolver is not believed). Raised when any is theirs,
    cleared only when every one is known."""
    v: Verdicts = {}
    found = []
    unknown = False
    for i, (what, host) in enumerate(logins):
        who = provider(host, None, banner) if i == 0 else provider(host, mx, None)
        unknown |= who is None and (banner is None if i == 0 else mx is None)
        if who is not None:
            date = MICROSOFT_DATE if who == "microsoft" else GOOGLE_DATE
            found.append(f"{what} with a password to {host}: {date}")
    if found or not unknown:
        judge(v, "basic_auth_retiring", cc, bool(found), "; ".join(found))
    return v


# --- Drift and key age -------------------------------------------------------------------

KEY_OLD_DAYS: Final = 365  # M3AAWG's DKIM key rotation advice: at least once a year

DRIFT: Final = {"spf": "spf_changed", "dmarc": "dmarc_changed", "dkim": "dkim_key_changed"}

DRIFT_CODES: Final = declare(
    {
        "spf_changed": (
            "warning",
            "The domain's SPF record changed (the old and new record are shown). If you did "
            "not change it, find out who did: a new include authorizes a new sender.",
        ),
        "dmarc_changed": (
            "warning",
            "The domain's DMARC record changed (the old and new record are shown). A policy "
            "relaxed from reject or quarantine to none stops receivers acting on forgeries.",
        ),
        "dkim_key_changed": (
            "warning",
            "A DKIM selector's key record changed (the old and new record are shown). Mail "
            "signed with the old key and still in flight fails DKIM; if you did not rotate "
            "it, find out who did.",
        ),
        "dkim_key_old": (
            "info",
            "A DKIM key has been published unchanged for over a year as mailprobe saw it. "
            "M3AAWG advises rotating keys at least yearly: publish a new key under a new "
            "selector, sign with it, then revoke the old one.",
        ),
    }
)
# Every drift is of the domain's records, read alike by every monitor naming it.
DRIFT_DOMAIN_FACTS: Final = domain_facts(dict.fromkeys(DRIFT_CODES, SENDING))


def readings(f: Readiness) -> dict[str, str]:
    """The records of `f` that were read for sure, by what they are (`spf`, `dmarc`: the one
    that applies by the Tree Walk, `dkim:<selector>`; "" for none published): what drift
    compares. Nothing of a round whose
    resolver is not believed, nor of a lookup that failed."""
    out: dict[str, str] = {}
    if not f.domain or not believed(f.canaries):
        return out
    if f.spf is not None and not (f.spf.error and not f.spf.nodes):
        out["spf"] = f.spf.record or ""
    walked = tree_walk(f.domain, f.dmarc.walk) if f.dmarc is not None and f.dmarc.walk else None
    if walked is not None:
        out["dmarc"] = walked.record or ""  # the record that applies, the domain's or above
    for k in f.dkim:
        if k.record is not None or not k.error:
            out[f"dkim:{k.selector}"] = k.record or ""
    return out


def _drift(v: Verdicts, cc: str, domain: str, f: Readiness, at: datetime) -> None:
    kept = f.kept
    if kept is None:
        return  # stored before the controller kept records: nothing known
    read = readings(f)
    changed: dict[str, list[str]] = {}
    for c in kept.changes:
        family = c.what.split(":", 1)[0]
        where = f"{c.what.split(':', 1)[1]}._domainkey.{domain}" if family == "dkim" else domain
        before = c.before or "(none)"
        after = c.after or "(none)"
        changed.setdefault(family, []).append(f"{where}: «{before}» → «{after}»")
    for family, code in DRIFT.items():
        if family in changed or any(w.split(":", 1)[0] == family for w in read):
            judge(v, code, cc, family in changed, "; ".join(changed.get(family, [])))
    old = [
        sel
        for sel, since in sorted(kept.key_since.items())
        if read.get(f"dkim:{sel}")
        and at - datetime.fromisoformat(since) > timedelta(days=KEY_OLD_DAYS)
    ]
    if read and any(w.startswith("dkim:") for w in read):
        detail = ", ".join(f"{s}._domainkey.{domain} since {kept.key_since[s][:10]}" for s in old)
        judge(v, "dkim_key_old", cc, bool(old), detail)


def moves(
    stored: Mapping[str, tuple[str, datetime]], read: Mapping[str, str], at: datetime
) -> tuple[list[Change], dict[str, datetime]]:
    """What changed between the records `stored` (what → (record, since)) and those `read` at
    `at`, and since when each record read has been as it is now."""
    changes: list[Change] = []
    since: dict[str, datetime] = {}
    for what, now in sorted(read.items()):
        old = stored.get(what)
        if old is None or old[0] == now:
            since[what] = at if old is None else old[1]
            continue
        changes.append(Change(what=what, before=old[0], after=now, since=old[1].isoformat()))
        since[what] = at
    return changes, since
