"""Posture rules, pure: one round's observations (one per country) → verdicts on findings, the
baseline changes seen everywhere, and certificate expiry notices.

A verdict maps a finding's key (code, country; country "" for the monitor as a whole) to the
finding when it holds, or to None when the round could judge it and it does not hold. A key the
round could not judge (that country had no such fact this round) is absent, so a country whose
check failed neither raises nor clears anything.

Drift compares countries within the round: a server does not offer STARTTLS to one country and
not another, so the odd one out is on a path that strips it. A change every observing country
sees alike (a renewed certificate, a new TLS version) moves the baseline and is recorded, never
alarmed. `Tracker` opens a drift finding only after `DRIFT_ROUNDS` rounds in a row, so a
rollout that one round catches half-done is not an alarm.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.arrivals import grading as grading  # declares the senders' grading kinds
from controller.monitors.thresholds import DEFAULT_EXPIRY_DAYS, Severity
from controller.posture.facts import TLS_RANK, Observation
from controller.sidechecks import registry as registry  # loads each side check's kinds
from controller.sidechecks.findings import KINDS, Kind, declare
from controller.sidechecks.findings import Finding as Finding
from controller.sidechecks.findings import Key as Key
from controller.sidechecks.findings import Verdicts as Verdicts
from controller.sidechecks.findings import judge as judge

DRIFT_ROUNDS = 2
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224
WEAK_CIPHER_PARTS = ("NULL", "EXP", "RC4", "DES", "MD5", "ADH", "AECDH", "ANON")
WEAK_SIGNATURE_PARTS = ("sha1", "md5", "md2")
# Logins that send a reusable secret as it is (a password, or a bearer token): PLAIN and LOGIN
# in SMTP, IMAP and POP3 SASL, IMAP's LOGIN command and POP3's USER/PASS, OAuth2's bearers.
CLEAR_LOGINS = frozenset({"PLAIN", "LOGIN", "USER", "XOAUTH2", "OAUTHBEARER"})

# The core check's finding kinds: code → (severity, what a person can do about it). Each side
# check declares its own in its package (controller/sidechecks); `CODES` is them all.
CORE_CODES: Mapping[str, Kind] = {
    "starttls_stripped": (
        "critical",
        "The server offers STARTTLS to the other countries: something on the network path from "
        "this country removes it, so mail from there may travel unencrypted. Check the server's "
        "firewall or filters for that region and report it to the network operator.",
    ),
    "downgrade": (
        "critical",
        "This country is offered less than the others (an AUTH mechanism or a TLS version): a "
        "middlebox on its path may be downgrading the connection. Compare the server's "
        "configuration across its front ends and check the path from that country.",
    ),
    "certificate_mismatch": (
        "critical",
        "This country is served another certificate than the others: a TLS interception on "
        "the path, or a front end the last certificate rollout missed. Check which front end "
        "serves that region and deploy the current certificate there.",
    ),
    "auth_in_clear": (
        "critical",
        "The server offers a password login (PLAIN, LOGIN, USER/PASS or a bearer token) on a "
        "connection without TLS and offers no STARTTLS/STLS: every client that logs in sends "
        "its password in clear. Offer STARTTLS (or TLS on its own port) and take logins only "
        "over TLS (Postfix smtpd_tls_auth_only, Dovecot disable_plaintext_auth).",
    ),
    "auth_without_tls": (
        "warning",
        "The server takes logins on a connection without TLS and offers no STARTTLS/STLS; its "
        "mechanisms send no password in clear, but the session and what follows it are "
        "unprotected, and the exchange can be attacked offline. Offer STARTTLS and take logins "
        "only over TLS.",
    ),
    "tls_below_1_2": (
        "warning",
        "The server negotiates a TLS version older than 1.2, which is deprecated (RFC 8996). "
        "Enable TLS 1.2 and 1.3 and disable TLS 1.0 and 1.1.",
    ),
    "weak_cipher": (
        "warning",
        "The server chose a weak cipher (RC4, DES/3DES, NULL, export or anonymous). Remove "
        "these from its cipher list.",
    ),
    "short_key": (
        "warning",
        "The certificate's key is too short (RSA or DSA below 2048 bits, EC below 224). Issue "
        "a new certificate with a longer key.",
    ),
    "sha1_signature": (
        "warning",
        "The certificate is signed with SHA-1 (or MD5), which clients no longer trust. Have it "
        "reissued with a SHA-256 signature.",
    ),
    "chain_not_verified": (
        "critical",
        "The certificate chain does not lead to a trusted root (self-signed, a missing "
        "intermediate, or out of its validity). Install the full chain from your CA.",
    ),
    "name_mismatch": (
        "critical",
        "The certificate does not name the monitored host. Add the host name to the "
        "certificate, or monitor the name the certificate is for.",
    ),
    "certificate_expired": (
        "critical",
        "The certificate has expired: verifying clients refuse it. Renew it now.",
    ),
    "certificate_expiring": (
        "warning",
        "The certificate expires soon. Renew it, or check that automatic renewal works.",
    ),
}
DRIFT_CODES = frozenset({"starttls_stripped", "downgrade", "certificate_mismatch"})
# Told by their own notices (`cert_expiry`, once per threshold), not as a finding.
QUIET_CODES = frozenset({"certificate_expiring"})
declare(CORE_CODES, QUIET_CODES)
# Every finding kind: the core's and every registered side check's.
CODES: Mapping[str, Kind] = KINDS


# The facts a baseline keeps per country; a value is hashable and JSON-friendly.
BASELINE_FACTS = ("starttls", "auth", "tls_version", "cert_sha256")
Baseline = dict[str, object]


def baseline_of(o: Observation) -> Baseline:
    """The baseline facts `o` has (a fact it lacks is left out)."""
    values: Baseline = {}
    if o.starttls is not None:
        values["starttls"] = o.starttls
    if o.auth is not None:
        values["auth"] = " ".join(sorted(o.auth))
    if o.tls_version is not None:
        values["tls_version"] = o.tls_version
    if o.cert_sha256 is not None:
        values["cert_sha256"] = o.cert_sha256
    return values


def quality(o: Observation, expiry_days: Sequence[int] = DEFAULT_EXPIRY_DAYS) -> Verdicts:
    """Findings on what one country saw alone: logins without TLS, the TLS it spoke and the
    certificate."""
    v: Verdicts = {}
    cc = o.country
    if (logins := o.clear_logins) is not None:
        sent = sorted(logins & CLEAR_LOGINS)
        offered = "offered on a plain connection, with no STARTTLS/STLS"
        judge(v, "auth_in_clear", cc, bool(sent), f"login by {' '.join(sent)} {offered}")
        others = " ".join(sorted(logins))
        judge(v, "auth_without_tls", cc, bool(logins) and not sent, f"login by {others} {offered}")
    if (rank := o.tls_rank) is not None:
        judge(v, "tls_below_1_2", cc, rank < TLS_RANK["TLSv1.2"], f"{o.tls_version} negotiated")
    if o.cipher is not None:
        weak = any(part in o.cipher.upper() for part in WEAK_CIPHER_PARTS)
        judge(v, "weak_cipher", cc, weak, f"cipher {o.cipher}")
    if o.key_type is not None and o.key_bits is not None:
        least = MIN_EC_BITS if o.key_type == "EC" else MIN_RSA_BITS
        short = o.key_type in ("RSA", "DSA", "EC") and o.key_bits < least
        judge(v, "short_key", cc, short, f"{o.key_type} key of {o.key_bits} bits")
    if o.signature is not None:
        weak = any(part in o.signature.lower() for part in WEAK_SIGNATURE_PARTS)
        judge(v, "sha1_signature", cc, weak, f"signature {o.signature}")
    if o.chain_verified is not None:
        judge(v, "chain_not_verified", cc, not o.chain_verified, "the chain did not verify")
    if o.name_matched is not None:
        judge(v, "name_mismatch", cc, not o.name_matched, "the certificate names another host")
    if o.days_left is not None:
        when = f"expires in {o.days_left} days" if o.days_left >= 0 else "has expired"
        judge(v, "certificate_expired", cc, o.days_left < 0, f"the certificate {when}")
        soon = 0 <= o.days_left <= max(expiry_days, default=0)
        judge(v, "certificate_expiring", cc, soon, f"the certificate {when}")
    return v


def drift(observations: Sequence[Observation], baselines: Mapping[str, Baseline]) -> Verdicts:
    """Findings on a country that sees less than the others in the same round (needs at least
    two countries with the fact). `baselines`: per country, what it saw before; it decides which
    certificate is the odd one when as many countries see each."""
    v: Verdicts = {}
    upgrades = [o for o in observations if o.starttls is not None]
    stripped: set[str] = set()
    if len(upgrades) > 1:
        offered = [o.country for o in upgrades if o.starttls]
        for o in upgrades:
            holds = bool(offered) and not o.starttls
            if holds:
                stripped.add(o.country)
            judge(v, "starttls_stripped", o.country, holds, _not_offered(o, offered))
    tls = [o for o in observations if o.tls_rank is not None and o.country not in stripped]
    if len(tls) > 1:
        best = max(tls, key=lambda o: o.tls_rank or 0)
        for o in tls:
            lost: list[str] = []
            if (o.tls_rank or 0) < (best.tls_rank or 0):
                lost.append(f"{o.tls_version} where {best.country} gets {best.tls_version}")
            if o.auth is not None:
                others = set().union(*(p.auth or () for p in tls if p is not o))
                if missing := sorted(others - o.auth):
                    lost.append(f"AUTH {' '.join(missing)} not offered, as it is elsewhere")
            judge(v, "downgrade", o.country, bool(lost), "; ".join(lost))
    certs = [o for o in observations if o.cert_sha256 is not None]
    if len(certs) > 1:
        usual = _usual_certificate(certs, baselines)
        with_usual = ", ".join(sorted(o.country for o in certs if o.cert_sha256 == usual))
        for o in certs:
            odd = o.cert_sha256 != usual
            seen = (o.cert_sha256 or "")[:16]
            detail = f"certificate {seen}… where {with_usual} see {usual[:16]}…"
            judge(v, "certificate_mismatch", o.country, odd, detail)
    return v


def _not_offered(o: Observation, offered: list[str]) -> str:
    return f"STARTTLS not offered to {o.country}, offered to {', '.join(sorted(offered))}"


def _usual_certificate(certs: Sequence[Observation], baselines: Mapping[str, Baseline]) -> str:
    """The fingerprint most countries see; on a tie, the one most countries saw before too."""
    seen = Counter(o.cert_sha256 or "" for o in certs)
    kept = Counter(
        o.cert_sha256 or ""
        for o in certs
        if baselines.get(o.country, {}).get("cert_sha256") == o.cert_sha256
    )
    return max(sorted(seen), key=lambda fp: (seen[fp], kept[fp]))


@dataclass(frozen=True, slots=True)
class Change:
    """A fact every observing country now sees alike, other than some baseline had it."""

    fact: str
    before: list[object]  # the distinct earlier values, sorted by their text
    after: object
    countries: list[str]


def baseline_moves(
    observations: Sequence[Observation], baselines: Mapping[str, Baseline]
) -> tuple[dict[str, Baseline], list[Change]]:
    """The new baselines (per country that observed anything) and the changes to record.

    A fact moves a country's baseline only when all countries that observed it this round agree
    (a disagreement is drift, judged above, and the odd country's baseline stays what it was);
    a country's first observation of a fact sets it silently.
    """
    new = {cc: dict(b) for cc, b in baselines.items()}
    changes: list[Change] = []
    facts = {o.country: baseline_of(o) for o in observations}
    for fact in BASELINE_FACTS:
        values = {cc: f[fact] for cc, f in facts.items() if fact in f}
        if not values or len(set(values.values())) > 1:
            continue
        after = next(iter(values.values()))
        before = {new.get(cc, {}).get(fact) for cc in values} - {None, after}
        for cc in values:
            new.setdefault(cc, {})[fact] = after
        if before:
            ordered = sorted(before, key=str)
            changes.append(Change(fact, ordered, after, sorted(values)))
    return new, changes


@dataclass
class Tracker:
    """Open findings and drift streaks of one monitor, moved one round at a time."""

    open: dict[Key, Finding] = field(default_factory=dict)
    streaks: dict[Key, int] = field(default_factory=dict)

    def step(self, verdicts: Verdicts) -> tuple[list[Finding], list[Finding]]:
        """Apply one round's verdicts; return the findings that appeared and those cleared."""
        appeared: list[Finding] = []
        cleared: list[Finding] = []
        for key, finding in sorted(verdicts.items()):
            if finding is None:
                self.streaks.pop(key, None)
                if (gone := self.open.pop(key, None)) is not None:
                    cleared.append(gone)
                continue
            streak = self.streaks[key] = self.streaks.get(key, 0) + 1
            if key in self.open:
                self.open[key] = finding  # the latest detail
            elif streak >= (DRIFT_ROUNDS if finding.code in DRIFT_CODES else 1):
                self.open[key] = finding
                appeared.append(finding)
        return appeared, cleared


def expiry_severity(days_left: int) -> Severity:
    """An expiry notice's severity: that of the finding it tells of."""
    return CODES["certificate_expired" if days_left < 0 else "certificate_expiring"][0]


def expiry_notice(days_left: int, thresholds: Iterable[int], sent: Iterable[int]) -> int | None:
    """The threshold (days) to notify for a certificate with `days_left`, once per threshold:
    the smallest one it has crossed, unless that one was sent. A certificate first seen past
    several thresholds gets only the nearest; the caller records the others as sent with it."""
    crossed = [t for t in thresholds if days_left <= t]
    if not crossed:
        return None
    nearest = min(crossed)
    return None if nearest in set(sent) else nearest


def crossed(days_left: int, thresholds: Iterable[int]) -> list[int]:
    return sorted(t for t in thresholds if days_left <= t)
