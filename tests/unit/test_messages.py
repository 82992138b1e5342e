"""Wire messages: round trips, schema evolution, and rejection of malformed payloads."""

import json
from typing import Any

import msgspec
import pytest

from shared.messages import (
    AGENT_FEATURES,
    FEATURE_GRAPH,
    FEATURE_LOOK_ONLY,
    AgentHeartbeat,
    ArcResults,
    CheckResult,
    ImapCheckJob,
    ImapPopConfig,
    MonitorEvent,
    Phases,
    Pop3CheckJob,
    RoundTripCheckJob,
    RoundTripConfig,
    RoundTripReceive,
    RoundTripSend,
    SmtpAuth,
    SmtpCheckJob,
    SmtpConfig,
    TlsInfo,
    TlsOptions,
    decode_event,
    decode_heartbeat,
    decode_job,
    decode_result,
    default_port,
    encode,
)
from shared.secret import Secret, dec_hook
from shared.sidechecks import SideCheckError
from shared.sidechecks.blocklists import WIRE as BLOCKLISTS
from shared.sidechecks.blocklists import BlocklistAnswer, BlocklistAsk, BlocklistZone, Reputation
from shared.sidechecks.mail_dns import WIRE as MAIL_DNS
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.relay import WIRE as RELAY
from shared.sidechecks.relay import RelayTest
from shared.sidechecks.reverse_dns import WIRE as REVERSE_DNS
from shared.sidechecks.reverse_dns import PtrCheck, ReverseDns
from shared.subjects import events_subject, jobs_subject, results_subject

T = "2026-01-01T12:00:00.000Z"


def smtp_job() -> SmtpCheckJob:
    return SmtpCheckJob(
        job_id="j1",
        monitor_id="m1",
        hostname="mx.example.com",
        port=587,
        timeout_seconds=15,
        country="DE",
        scheduled_at=T,
        expires_at=T,
        config=SmtpConfig(
            require_tls=True,
            auth=SmtpAuth(user="u", password=Secret("p")),
            tls_options=TlsOptions(reject_unauthorized=False),
        ),
    )


def result() -> CheckResult:
    return CheckResult(
        job_id="j1",
        monitor_id="m1",
        monitor_type="smtp",
        country="DE",
        agent_id="a1",
        scheduled_at=T,
        started_at=T,
        finished_at=T,
        status="down",
        error_kind="auth",
        message="authentication failed: 535",
        banner="mx.example.com ESMTP",
        response_time_ms=12.5,
        phases=Phases(dns_ms=1.0, connect_ms=2.0, tls_ms=3.0, greeting_ms=4.0),
        tls=TlsInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cert_days_left=30),
        address="192.0.2.7",
    )


def test_job_round_trip_and_camel_case_wire_shape() -> None:
    job = smtp_job()
    wire = json.loads(encode(job))
    assert wire["v"] == 1
    assert wire["monitorType"] == "smtp"
    assert wire["timeoutSeconds"] == 15
    assert wire["config"]["requireTls"] is True
    assert wire["config"]["auth"] == {"user": "u", "pass": "p", "mechanism": "", "accessToken": ""}
    assert wire["config"]["tlsOptions"] == {
        "rejectUnauthorized": False,
        "ca": None,
        "servername": None,
    }
    assert decode_job(encode(job)) == job


@pytest.mark.parametrize(
    ("job", "cls"),
    [
        (
            ImapCheckJob(
                job_id="j",
                monitor_id="m",
                hostname="h",
                country="US",
                scheduled_at=T,
                expires_at=T,
                config=ImapPopConfig(tls=True),
            ),
            ImapCheckJob,
        ),
        (
            Pop3CheckJob(
                job_id="j", monitor_id="m", hostname="h", country="US", scheduled_at=T, expires_at=T
            ),
            Pop3CheckJob,
        ),
    ],
)
def test_imap_and_pop3_jobs_decode_to_their_own_type(job: object, cls: type) -> None:
    decoded = decode_job(encode(job))  # type: ignore[arg-type]
    assert isinstance(decoded, cls)
    assert decoded == job


def test_secrets_are_masked_in_repr() -> None:
    assert "p'" not in repr(smtp_job().config.auth)
    assert "hunter2" not in repr(ImapPopConfig(password=Secret("hunter2")))


def test_result_heartbeat_event_round_trip() -> None:
    r = result()
    assert decode_result(encode(r)) == r
    wire = json.loads(encode(r))
    assert wire["errorKind"] == "auth"
    assert wire["phases"] == {
        "dnsMs": 1.0,
        "connectMs": 2.0,
        "tlsMs": 3.0,
        "greetingMs": 4.0,
        "authMs": None,
        # the round trip's phases (issue 14), null for the other kinds
        "submitMs": None,
        "deliveryMs": None,
        "fetchMs": None,
    }
    assert set(wire["tls"]) == {
        "version",
        "cipher",
        "certSubject",
        "certNotAfter",
        "certDaysLeft",
        "mode",
        "certSha256",
        "certIssuer",
        "certSans",
        "certKeyType",
        "certKeyBits",
        "certSignature",
        "chainVerified",
        "nameMatched",
        "certSpkiSha256",  # mail DNS (DANE 3 1 1)
    }
    assert wire["capabilities"] is None and wire["capabilitiesBeforeTls"] is None
    hb = AgentHeartbeat(
        agent_id="a1",
        country="DE",
        version="0.1.0",
        in_flight=3,
        capacity=50,
        started_at=T,
        seen_at=T,
    )
    assert decode_heartbeat(encode(hb)) == hb
    assert json.loads(encode(hb))["inFlight"] == 3
    ev = MonitorEvent(
        monitor_id="m1",
        state="down",
        previous_state="up",
        at=T,
        countries=["DE", "US"],
        cause="2 of 2 countries failing",
    )
    assert decode_event(encode(ev)) == ev


def test_result_fields_are_exactly_the_contract() -> None:
    assert set(json.loads(encode(result()))) == {
        "v",
        "jobId",
        "monitorId",
        "monitorType",
        "country",
        "agentId",
        "scheduledAt",
        "startedAt",
        "finishedAt",
        "status",
        "errorKind",
        "message",
        "banner",
        "responseTimeMs",
        "phases",
        "tls",
        "address",
        # round trip only (issue 14), null for the other kinds
        "folder",
        "hops",
        "authResults",
        "arc",  # the message's ARC chain (issue 82), null without one
        "capabilities",
        "capabilitiesBeforeTls",
        "logins",  # null from agents that predate it
        "sideChecks",  # each side check's facts by name (issue 65); {} without any
        "sideCheckErrors",  # why an asked side check gave no facts, by name (issue 81)
        # the job's asks and their seal, echoed with side facts of a sealed job (issue 78)
        "asks",
        "asksSeal",
    }


def test_newer_payload_with_unknown_fields_decodes_with_older_types() -> None:
    job = json.loads(encode(smtp_job()))
    job["priority"] = "high"
    job["config"]["dkimCheck"] = {"selector": "s1"}
    assert decode_job(json.dumps(job).encode()) == smtp_job()
    res = json.loads(encode(result()))
    res["v"] = 1
    res["traceId"] = "abc"
    res["phases"]["mxLookupMs"] = 3.0
    res["errorKind"] = "rate_limited"  # a kind an older reader does not know yet
    decoded = decode_result(json.dumps(res).encode())
    assert decoded.error_kind == "rate_limited"
    assert decoded.phases.dns_ms == 1.0


def test_minimal_payload_takes_defaults() -> None:
    job = decode_job(
        b'{"monitorType":"pop3","jobId":"j","monitorId":"m","hostname":"h",'
        b'"country":"DE","scheduledAt":"x","expiresAt":"y"}'
    )
    assert isinstance(job, Pop3CheckJob)
    assert (job.v, job.port, job.config.protocol, job.config.tls) == (1, 0, "pop3", False)
    assert job.config.tls_options.reject_unauthorized is True


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"not json", msgspec.DecodeError),
        (b'{"monitorType":"smtp"', msgspec.DecodeError),
        (b"[]", msgspec.ValidationError),
        (b'{"monitorType":"gopher","jobId":"j"}', msgspec.ValidationError),
        (b'{"monitorType":"smtp","jobId":"j"}', msgspec.ValidationError),
        (
            b'{"monitorType":"smtp","jobId":"j","monitorId":"m","hostname":"h","country":"DE",'
            b'"scheduledAt":"x","expiresAt":"y","port":"25"}',
            msgspec.ValidationError,
        ),
    ],
)
def test_malformed_job_raises(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_job(payload)


def test_malformed_result_raises() -> None:
    wire = json.loads(encode(result()))
    wire["status"] = "sideways"
    with pytest.raises(msgspec.ValidationError):
        decode_result(json.dumps(wire).encode())


def test_default_ports() -> None:
    assert default_port("smtp", SmtpConfig()) == 25
    assert default_port("smtp", SmtpConfig(secure=True)) == 465
    assert default_port("imap", ImapPopConfig(tls=True)) == 993
    assert default_port("imap", ImapPopConfig()) == 143
    assert default_port("pop3", ImapPopConfig(tls=True)) == 995
    assert default_port("pop3", ImapPopConfig()) == 110


def test_subjects() -> None:
    assert jobs_subject("DE") == "mon.jobs.DE"
    assert results_subject("US", "smtp", "abc-123") == "mon.results.US.smtp.abc-123"
    assert events_subject("abc-123") == "mon.events.abc-123"
    for bad in ("de", "DEU", "D*"):
        with pytest.raises(ValueError):
            jobs_subject(bad)
    with pytest.raises(ValueError):
        results_subject("DE", "smtp", "a.>")


def test_tls_facts_of_an_agent_from_before_tls_mode_still_decode() -> None:
    """`tls.mode` came later: a result without it decodes, with the mode unknown (null)."""
    wire = json.loads(encode(result()))
    del wire["tls"]["mode"]
    decoded = decode_result(json.dumps(wire).encode())
    assert decoded.tls is not None and decoded.tls.mode is None
    assert decoded.tls.version == "TLSv1.3"


def test_mail_domain_and_mail_dns_are_defaulted_additions() -> None:
    """A job without `mailDomain` (an older controller's) decodes with none; a result's mail
    DNS facts round-trip under `sideChecks.mail_dns` with their camelCase names."""
    wire = json.loads(encode(smtp_job()))
    assert wire["mailDomain"] is None
    del wire["mailDomain"]
    assert decode_job(json.dumps(wire).encode()).mail_domain is None
    r = result()
    facts = MailDns(
        domain="example.com", mx=["mx.example.com"], tls_rpt=[], errors={"dmarc": "timed out"}
    )
    r.side_checks[MAIL_DNS.name] = facts
    wire = json.loads(encode(r))
    assert wire["sideChecks"]["mail_dns"]["tlsRpt"] == []
    assert wire["sideChecks"]["mail_dns"]["tlsaDnssec"] is False
    assert MAIL_DNS.facts_of(decode_result(encode(r)).side_checks) == facts
    # An older agent's facts have no Tree Walk above the domain: none, not judged as one.
    assert wire["sideChecks"]["mail_dns"]["dmarcWalk"] is None
    del wire["sideChecks"]["mail_dns"]["dmarcWalk"]
    assert MAIL_DNS.facts_of(decode_result(json.dumps(wire).encode()).side_checks) == facts


def test_blocklists_and_reputation_are_defaulted_additions() -> None:
    """A job without `blocklists` (an older controller's) decodes with none; a result's
    blocklist facts round-trip under `sideChecks.blocklists` with their camelCase names."""
    wire = json.loads(encode(smtp_job()))
    assert wire["blocklists"] is None
    del wire["blocklists"]
    assert decode_job(json.dumps(wire).encode()).blocklists is None
    job = smtp_job()
    job.blocklists = BlocklistAsk(
        zones=[BlocklistZone(zone="zen.spamhaus.org", dqs=True)], host=True, mx_domain="e.com"
    )
    wire = json.loads(encode(job))
    assert wire["blocklists"]["mxDomain"] == "e.com"
    zone = {"zone": "zen.spamhaus.org", "kind": "ip", "dqs": True, "tests": [], "skip": []}
    assert wire["blocklists"]["zones"] == [zone]
    assert decode_job(encode(job)) == job
    del wire["blocklists"]["zones"][0]["tests"]  # an older controller's: no test entries named
    del wire["blocklists"]["zones"][0]["skip"]  # nor what each list answered lately
    assert decode_job(json.dumps(wire).encode()) == job
    r = result()
    facts = Reputation(
        names={"192.0.2.1": "host"},
        answers=[BlocklistAnswer(zone="zen.spamhaus.org", name="192.0.2.1", a=["127.0.0.2"])],
    )
    r.side_checks[BLOCKLISTS.name] = facts
    assert BLOCKLISTS.facts_of(decode_result(encode(r)).side_checks) == facts


def test_side_checks_are_a_defaulted_addition_both_ways() -> None:
    """Issue 65: a job without `sideChecks` (an older controller's) asks for none; a result
    without it (an older agent's) has none; a side check's facts travel under its name with
    their camelCase fields, and a newer agent's field or side check decodes all the same (an
    unknown name is kept as JSON and skipped by whoever does not know it)."""
    wire = json.loads(encode(smtp_job()))
    assert wire["sideChecks"] == {} and wire["reverseDns"] is False
    del wire["sideChecks"]
    assert decode_job(json.dumps(wire).encode()).side_checks == {}
    r = result()
    old = json.loads(encode(r))
    del old["sideChecks"]
    assert decode_result(json.dumps(old).encode()).side_checks == {}
    facts = ReverseDns(
        addresses=[
            PtrCheck(address="192.0.2.1", names=["mail.example.com"], confirmed=[]),
            PtrCheck(address="2001:db8::1", error="timed out"),
        ]
    )
    r.side_checks[REVERSE_DNS.name] = facts
    wire = json.loads(encode(r))
    assert wire["sideChecks"]["reverse_dns"]["addresses"][1] == {
        "address": "2001:db8::1",
        "names": None,
        "confirmed": None,
        "error": "timed out",
    }
    assert REVERSE_DNS.facts_of(decode_result(encode(r)).side_checks) == facts
    wire["sideChecks"]["reverse_dns"]["addresses"][0]["bannerMatch"] = True  # a newer field
    wire["sideChecks"]["dkim"] = {"selectors": ["s1"]}  # a newer agent's side check
    newer = decode_result(json.dumps(wire).encode())
    assert REVERSE_DNS.facts_of(newer.side_checks) == facts
    assert newer.side_checks["dkim"] == {"selectors": ["s1"]}
    wire["sideChecks"]["reverse_dns"] = {"addresses": "none"}  # a value of the wrong shape
    with pytest.raises(SideCheckError, match="reverse_dns"):
        REVERSE_DNS.facts_of(decode_result(json.dumps(wire).encode()).side_checks)


def test_relay_check_and_relay_are_defaulted_additions() -> None:
    """Issue 58: an SMTP config without `relayCheck` (an older controller's) asks for no relay
    test; the test's replies travel under `sideChecks.relay` (issue 65)."""
    wire = json.loads(encode(smtp_job()))
    assert wire["config"]["relayCheck"] is False
    del wire["config"]["relayCheck"]
    job = decode_job(json.dumps(wire).encode())
    assert isinstance(job, SmtpCheckJob) and job.config.relay_check is False
    r = result()
    facts = RelayTest(sender="s@example.org", recipient="r@example.net", mail_from="250 ok")
    r.side_checks[RELAY.name] = facts
    wire = json.loads(encode(r))
    assert wire["sideChecks"]["relay"] == {
        "sender": "s@example.org",
        "recipient": "r@example.net",
        "mailFrom": "250 ok",
        "rcptTo": None,
        "error": "",
    }
    assert RELAY.facts_of(decode_result(encode(r)).side_checks) == facts


def test_look_only_is_a_defaulted_addition_and_a_feature() -> None:
    """A round-trip job without `lookOnly` (an older controller's) sends, as always; one with
    it round-trips, and an older agent's type, without the field, still decodes it (and would
    send: hence the `look_only` feature the scheduler asks of every live agent first)."""
    job = RoundTripCheckJob(
        job_id="j", monitor_id="m", hostname="smtp.example.com", country="DE",
        scheduled_at="2026-01-01T00:00:00.000Z", expires_at="2026-01-01T00:01:00.000Z",
    )  # fmt: skip
    wire = json.loads(encode(job))
    assert wire["lookOnly"] == ""
    del wire["lookOnly"]
    decoded = decode_job(json.dumps(wire).encode())
    assert isinstance(decoded, RoundTripCheckJob) and decoded.look_only == ""
    job.look_only = "delivery_backoff"
    assert decode_job(encode(job)) == job

    class OlderRoundTripJob(msgspec.Struct, rename="camel"):
        job_id: str
        monitor_id: str

    older = msgspec.json.decode(encode(job), type=OlderRoundTripJob)
    assert (older.job_id, older.monitor_id) == ("j", "m")
    assert FEATURE_LOOK_ONLY in AGENT_FEATURES


def _older(kind: type[msgspec.Struct], without: set[str], **config: Any) -> type[msgspec.Struct]:
    """`kind` as the release before `without` were added declared it."""
    fields = [
        (
            f.name,
            f.type,
            # The stub allows one of the two; msgspec takes both, the unset one NODEFAULT.
            msgspec.field(default=f.default, default_factory=f.default_factory),  # type: ignore[call-overload]
        )
        for f in msgspec.structs.fields(kind)
        if f.name not in without
    ]
    return msgspec.defstruct(
        f"Older{kind.__name__}", fields, rename="camel", kw_only=True, **config
    )


def test_sealed_asks_are_a_defaulted_addition_both_ways() -> None:
    """Issue 78: a job's `asksSeal` and a result's `asks` and `asksSeal` are new, defaulted
    fields. The previous release's agent decodes a sealed job (and ignores the seal); its
    controller decodes a result that echoes them; a job or result without them (from the
    previous release) decodes with none."""
    job = smtp_job()
    job.side_checks = {"blocklists": {"ips": ["192.0.2.1"]}}
    job.asks_seal = "c2VhbA"
    older_job = _older(SmtpCheckJob, {"asks_seal"}, tag_field="monitorType", tag="smtp")
    old = msgspec.json.decode(encode(job), type=older_job, dec_hook=dec_hook)
    assert (old.job_id, old.side_checks) == ("j1", job.side_checks)  # type: ignore[attr-defined]
    r = result()
    r.asks, r.asks_seal = job.side_checks, job.asks_seal
    older_result = _older(CheckResult, {"asks", "asks_seal"})
    old_r = msgspec.json.decode(encode(r), type=older_result)
    assert (old_r.job_id, old_r.status) == ("j1", "down")  # type: ignore[attr-defined]
    wire = json.loads(encode(job))
    del wire["asksSeal"]
    assert decode_job(json.dumps(wire).encode()).asks_seal == ""
    wire = json.loads(encode(r))
    assert (wire["asks"], wire["asksSeal"]) == (job.side_checks, "c2VhbA")
    del wire["asks"], wire["asksSeal"]
    assert (decode_result(json.dumps(wire).encode()).asks, result().asks_seal) == ({}, "")


def test_graph_legs_are_defaulted_additions_and_a_feature() -> None:
    """Issue 82: a round trip's `send.api`, `receive.api` and `receive.cleanup`, and a result's
    `arc`, are new, defaulted fields. A job without them (the previous release's controller)
    speaks SMTP and IMAP as always; the previous release's agent type decodes a Graph job (and
    would speak SMTP/IMAP to it: hence the `graph` feature), its controller a result with
    `arc`."""
    job = RoundTripCheckJob(
        job_id="j", monitor_id="m", hostname="graph.microsoft.com", country="DE",
        scheduled_at="2026-01-01T00:00:00.000Z", expires_at="2026-01-01T00:01:00.000Z",
        config=RoundTripConfig(
            send=RoundTripSend(api="graph"),
            receive=RoundTripReceive(api="graph", cleanup="delete"),
        ),
    )  # fmt: skip
    wire = json.loads(encode(job))
    assert (wire["config"]["send"]["api"], wire["config"]["receive"]["api"]) == ("graph", "graph")
    assert wire["config"]["receive"]["cleanup"] == "delete"
    assert decode_job(encode(job)) == job
    older_receive = _older(RoundTripReceive, {"api", "cleanup"})
    older_send = _older(RoundTripSend, {"api"})
    older_config = msgspec.defstruct(
        "OlderRoundTripConfig",
        [("send", older_send), ("receive", older_receive), ("to", str, "")],
        rename="camel",
        kw_only=True,
    )
    old = msgspec.json.decode(
        json.dumps(wire["config"]).encode(), type=older_config, dec_hook=dec_hook
    )
    assert old.receive.protocol == "imap"  # type: ignore[attr-defined]
    for leg in ("send", "receive"):
        del wire["config"][leg]["api"]
    del wire["config"]["receive"]["cleanup"]
    decoded = decode_job(json.dumps(wire).encode())
    assert isinstance(decoded, RoundTripCheckJob)
    assert (decoded.config.send.api, decoded.config.receive.api) == ("", "")
    assert decoded.config.receive.cleanup == ""
    r = result()
    r.arc = ArcResults(instances=2, cv="pass", authentication_results="i=2; mx; spf=pass")
    old_r = msgspec.json.decode(encode(r), type=_older(CheckResult, {"arc"}))
    assert old_r.job_id == "j1"  # type: ignore[attr-defined]
    assert decode_result(encode(r)).arc == r.arc
    res = json.loads(encode(r))
    del res["arc"]
    assert decode_result(json.dumps(res).encode()).arc is None
    assert FEATURE_GRAPH in AGENT_FEATURES
