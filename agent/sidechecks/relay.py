"""The open relay test (issue 58) as a side check of the agent: it runs inside the core check's
own SMTP session (agent/probers/relay.py, from a session that has not logged in), so asking for
it is preparing the job (`relayCheck` on its config); its facts come with the core result."""

from typing import Final

import msgspec

from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks.base import AgentSideCheck, Round, Runner
from shared.clock import Clock
from shared.messages import CheckJob, SmtpCheckJob
from shared.sidechecks.relay import WIRE, RelayAsk, RelayTest


def prepare(job: CheckJob, ask: RelayAsk | None) -> CheckJob:
    """An SMTP job runs the test when it is asked for, and only then (whatever an older
    controller's `relayCheck` says)."""
    if not isinstance(job, SmtpCheckJob) or job.config.relay_check is (ask is not None):
        return job
    config = msgspec.structs.replace(job.config, relay_check=ask is not None)
    return msgspec.structs.replace(job, config=config)


async def _run(ask: RelayAsk, at: Round) -> RelayTest | None:
    """Nothing more to do: the session recorded the facts (or did not reach the test)."""
    return None


def build(
    settings: SideCheckSettings, targets: TargetSettings, clock: Clock
) -> Runner[RelayAsk, RelayTest]:
    return _run


SIDE_CHECK: Final = AgentSideCheck(WIRE, build, prepare)
