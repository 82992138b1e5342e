"""Probers: one module per protocol, one shared signature, and a plain registry.

A prober connects, talks, and records what it saw in a `Recorder`; it signals a failure it
understands by raising `ProbeFailure(kind, message)`. The caller (`run.run_check`) owns DNS,
the target policy, the deadline and the timing, and turns everything into a `CheckResult`.
"""

from agent.probers.base import ProbeFailure, ProbeFn, Recorder, Target
from agent.probers.imap import probe_imap
from agent.probers.pop3 import probe_pop3
from agent.probers.roundtrip import probe_roundtrip
from agent.probers.smtp import probe_smtp

PROBERS: dict[str, ProbeFn] = {
    "smtp": probe_smtp,
    "imap": probe_imap,
    "pop3": probe_pop3,
    "roundtrip": probe_roundtrip,
}

__all__ = ["PROBERS", "ProbeFailure", "ProbeFn", "Recorder", "Target"]
