"""Heartbeat timing agents and controller agree on.

An agent publishes its AgentHeartbeat every HEARTBEAT_INTERVAL_S on
`mon.heartbeats.CC.<agentId>` (core NATS, nothing stored) and a last one with `stopping` on a
clean stop; every controller keeps the live view in memory (controller.fleet.live).

A killed agent sends no last beat: its country stays live, and gets jobs nobody runs, until
the TTL runs out, so the TTL is kept short and the interval with it. A beat is a few hundred
bytes, so one a second per agent costs nothing worth saving.
"""

from typing import Final

HEARTBEAT_INTERVAL_S: Final = 1.0
# An agent not heard of for five beats is gone. Not fewer: a busy agent's loop, or a busy
# controller's (a beat waits in the client's buffer while the scheduler runs), can hold a beat
# back a few seconds, and an expired live agent is a phantom `no_agent` round for its whole
# country, which is worse than a few seconds of jobs sent to a dead one (they end `expired`).
HEARTBEAT_TTL_S: Final = 5 * HEARTBEAT_INTERVAL_S
# After the controller (re)connects, its view is complete once every live agent had the time
# to beat once, with some slack: before that, a country missing from it may have agents.
WARMUP_S: Final = 1.5 * HEARTBEAT_INTERVAL_S
