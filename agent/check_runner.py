"""The check runner: one job's check, from its opened config to its result with its side checks'
facts, as the worker runs it in a slot (agent.worker).

A job with credentials arrives sealed to the country's key (shared.sealing): it is opened here,
in memory, just before its check; one this agent cannot open (another key, corrupt) ends as an
`internal` result naming the key it needed and the keys the agent holds. The core check runs
(agent.probers.run), then its `inconclusive` rules (agent.selfcheck_rules: a check that failed
before any server answered is `inconclusive` when the canary of its port, or the resolver check,
fails too), then the side checks the job asks for, concurrently, under one deadline.
"""

import asyncio
from collections.abc import Mapping
from datetime import datetime

import msgspec
import structlog
from nats.aio.msg import Msg

from agent.bundles import Delivery
from agent.probers.run import MESSAGE_MAX, build_result, run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from agent.resolver import TargetResolver
from agent.selfcheck import SelfChecks
from agent.selfcheck_rules import (
    HAND_OVER_DELAY_S,
    before_run,
    checked,
    explain,
    job_ports,
    path_failure,
)
from agent.settings import SideCheckSettings, TargetSettings
from agent.settle import settle
from agent.sidechecks import SIDE_CHECKS, AnyRunner, AnySideCheck, Round
from shared.clock import Clock
from shared.messages import CheckJob, CheckResult, decode_job, decode_sealed, default_port
from shared.sealing import OpeningKeys, SealingError
from shared.sidechecks import SideCheckError, SideCheckErrorKind
from shared.timefmt import parse_iso

log = structlog.get_logger(__name__)
# How long a side check may run beyond its job's timeout before the runner ends it: its lookups
# keep to the job's budget (at most 10 s) and a second of guard.
SIDE_CHECK_GRACE_S = 15.0


class CheckRunner:
    """Runs jobs' checks as agent `agent_id`: `checked(job)` is the job's result. `side_checks`:
    runners by name (the registry's order); those not given are built from the settings an agent
    has without any. `self_checks`: this agent's canaries, for the `inconclusive` rules."""

    def __init__(
        self,
        agent_id: str,
        *,
        allow_private: bool = False,
        ssl_contexts: SslContexts | None = None,
        side_checks: Mapping[str, AnyRunner] | None = None,
        side_check_grace: float = SIDE_CHECK_GRACE_S,
        seal_keys: OpeningKeys | None = None,
        self_checks: SelfChecks | None = None,
        resolver: TargetResolver | None = None,
        clock: Clock,
    ) -> None:
        self.agent_id = agent_id
        self._allow_private = allow_private
        self._ssl = ssl_contexts or build_ssl_contexts()
        runners = dict(side_checks or {})
        defaults = SideCheckSettings()
        targets = TargetSettings(agent_allow_private_targets=allow_private)
        self._side_checks: list[tuple[AnySideCheck, AnyRunner]] = [
            (check, runners.get(name) or check.build(defaults, targets, clock))
            for name, check in SIDE_CHECKS.items()
        ]
        self._side_check_grace = side_check_grace
        self.seal_keys = seal_keys or OpeningKeys([])
        self.self_checks = self_checks
        self._resolver = resolver
        self._clock = clock

    def blocked_ports(self, job: CheckJob) -> list[int]:
        """The job's ports this agent's canaries say it cannot reach."""
        if self.self_checks is None:
            return []
        return [port for port in job_ports(job) if port in self.self_checks.blocked]

    async def bundle_handed_back(self, msg: Msg, parts: list[Delivery]) -> bool:
        """Whether `msg`, a bundle with a job this agent would hand back (selfcheck_rules.
        before_run: a port its canaries say it cannot reach), went back whole, before any of
        its jobs ran: a bundle comes back whole, and its other jobs need not run twice."""
        if self.self_checks is None or not self.self_checks.blocked or len(parts) < 2:
            return False
        jobs: list[CheckJob] = []
        back: list[int] = []
        for part in parts:
            try:
                job = decode_job(part.data)
                left = seconds_left(job, self._clock.now())
            except (msgspec.DecodeError, ValueError):
                continue  # rejected when its turn comes
            jobs.append(job)
            blocked = self.blocked_ports(job)
            verdict = before_run(
                blocked=bool(blocked),
                avoided=False,  # a job that avoids agents is never bundled
                delivered=msg.metadata.num_delivered,
                seconds_left=left,
            )
            if verdict == "hand_back":
                back += [port for port in blocked if port not in back]
        if not back:
            return False
        log.info(
            "bundle_handed_back",
            attempt=msg.metadata.num_delivered,
            blocked_ports=sorted(back),
            job_ids=[job.job_id for job in jobs],
        )
        await settle(msg.nak, HAND_OVER_DELAY_S)
        return True

    async def checked(self, job: CheckJob) -> CheckResult:
        """The job's result: its check run, with what else the job asks for."""
        try:
            opened = open_sealed(job, self.seal_keys)
        except SealingError as exc:
            log.error("job_not_opened", error=str(exc))
            result = build_result(job, self.agent_id, "internal", str(exc), self._clock.now())
        else:
            result = await run_check(
                self._prepared(opened),
                self.agent_id,
                self._allow_private,
                self._ssl,
                self._resolver,
                clock=self._clock,
            )
            result = await self._explained(job, result)
            port = opened.port or default_port(opened.monitor_type, opened.config)
            await self._side(Round(opened, result, port, self._resolver, self._ssl))
        return result

    def _prepared(self, job: CheckJob) -> CheckJob:
        """`job` as the prober sees it: prepared by each side check that runs inside the core
        check's session (the open relay test), asked for or not (an ask that does not decode
        is not asked)."""
        for check, _ in self._side_checks:
            if check.prepare is None:
                continue
            try:
                ask = check.wire.ask_of(job.side_checks)
            except SideCheckError:
                ask = None
            job = check.prepare(job, ask)
        return job

    async def _side(self, at: Round) -> None:
        """Run the side checks the job asks for, concurrently, into the result's `sideChecks`
        (in the registry's order), all under one deadline: the job's timeout and
        `side_check_grace` more from when they start (a runner keeps to its own budget; this
        bounds one that does not), so a slot is held for the longest, not the sum. One whose ask
        does not decode, that overstays or that raises gives no facts and is reported, alone, in
        the result's `sideCheckErrors` (`malformed_ask`, `timeout`, `internal`) and logged: a
        side check never spoils, nor holds back, the core check's result or another side
        check's. A round whose agent's own path failed (`inconclusive`) runs none: what they
        would gather is that path's (the controller keeps no side facts of such a result
        either)."""
        job, result = at.job, at.result
        if result.status == "inconclusive":
            return
        asked: list[tuple[str, AnyRunner, object]] = []
        for check, run in self._side_checks:
            name = check.wire.name
            try:
                ask = check.wire.ask_of(job.side_checks)
            except SideCheckError as exc:
                log.warning("side_check_ask_malformed", side_check=name, error=str(exc)[:200])
                result.side_check_errors[name] = "malformed_ask"
                continue
            if ask is not None:
                asked.append((name, run, ask))
        if not asked:
            return
        deadline = asyncio.get_running_loop().time() + job.timeout_seconds
        deadline += self._side_check_grace
        found = await asyncio.gather(
            *(self._side_one(name, run, ask, at, deadline) for name, run, ask in asked)
        )
        for (name, _, _), (facts, error) in zip(asked, found, strict=True):
            if facts is not None:
                result.side_checks[name] = facts
            elif error is not None and name not in result.side_checks:
                # (facts the core check's session gathered for it stand: the relay test's)
                result.side_check_errors[name] = error

    async def _side_one(
        self, name: str, run: AnyRunner, ask: object, at: Round, deadline: float
    ) -> tuple[object, SideCheckErrorKind | None]:
        """One side check's facts by `deadline` (the loop's clock), or why it gave none when
        it overstays (`timeout`) or raises (`internal`), logged under its own name; (None,
        None) when the round gave it nothing to look at."""
        try:
            async with asyncio.timeout_at(deadline):
                return await run(ask, at), None
        except TimeoutError:
            log.error("side_check_overstayed", side_check=name, s=at.job.timeout_seconds)
            return None, "timeout"
        except Exception as exc:  # a side check's bug: the core result still goes out
            log.error("side_check_failed", side_check=name, error=repr(exc)[:200])
            return None, "internal"

    async def _explained(self, job: CheckJob, result: CheckResult) -> CheckResult:
        """`result`, or, when it failed before a server answered and a fresh self-check fails
        the same way, the same result (timings kept) as `inconclusive`, saying which self-check
        failed and what the check saw."""
        if self.self_checks is None or (failure := path_failure(job, result)) is None:
            return result
        if not checked(failure, self.self_checks.states):
            return result
        await self.self_checks.recheck()
        why = explain(failure, self.self_checks.states)
        if why is None:
            return result
        return msgspec.structs.replace(
            result,
            status="inconclusive",
            error_kind="inconclusive",
            message=f"inconclusive: {why}; the check saw: {result.error_kind}: {result.message}"[
                :MESSAGE_MAX
            ],
        )


def open_sealed(job: CheckJob, keys: OpeningKeys) -> CheckJob:
    """`job` with its sealed config opened into `config` (in memory only); `job` itself when
    nothing is sealed. Raises SealingError saying which key was needed and which are held,
    never the sealed text."""
    if job.sealed_config is None:
        return job
    try:
        plain = keys.open(job.sealed_config, job.seal_key_id)
    except SealingError as exc:
        raise SealingError(f"cannot open the job's sealed config: {exc}") from None
    try:
        sealed = decode_sealed(plain, type(job.config))
    except msgspec.DecodeError:
        raise SealingError(
            f"the job's sealed config (key {job.seal_key_id}) is not a valid "
            f"{job.monitor_type} config"
        ) from None
    bound = (sealed.monitor_id, sealed.hostname, sealed.port)
    if bound != (job.monitor_id, job.hostname, job.port):
        raise SealingError(
            "the job's sealed config is bound to another monitor, host or port than the job's;"
            " its credentials are not used"
        )
    return msgspec.structs.replace(job, config=sealed.config, sealed_config=None)


def seconds_left(job: CheckJob, now: datetime) -> float:
    """From `now` until the job expires; raises ValueError when expiresAt is not an ISO
    time."""
    return (parse_iso(job.expires_at) - now).total_seconds()
