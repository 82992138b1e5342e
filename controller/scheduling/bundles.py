"""Which jobs travel together: the JOBS messages a pass's jobs go out as.

A job is one message for JetStream to store, deliver and take an ack for, and one for an
agent to read and ack: most of what a check costs NATS. So the jobs of one country that an
agent may run twice without anyone noticing go out as bundles (`shared.messages.encode_bundle`)
of up to `BUNDLE_MAX`, and never more than the slots of the country's smallest live agent
(`bundle_size`: an agent keeps a bundle whole, so one larger than its slots would leave jobs
waiting there while other agents stand idle), one message each, which the agent acks once all
its jobs are done (agent.bundles). A bundle comes back whole, so a job in it runs again when its
agent dies or hands one of its jobs back; only jobs whose check has no effect beyond a
connection go in one: not a job that logs in (sealed credentials), sends mail (a round trip) or
asks to be left to another agent (`avoidAgents`, which an agent hands back). Bundles go only to
the countries whose every live agent takes them (`FEATURE_BUNDLES`).
"""

from collections.abc import Iterable, Mapping, Sequence

from shared.messages import CheckJob, encode, encode_bundle
from shared.publishing import Outgoing
from shared.subjects import jobs_subject

BUNDLE_MAX = 50


def may_bundle(job: CheckJob) -> bool:
    """Whether running `job` twice does nothing a second connection would not."""
    return job.sealed_config is None and job.monitor_type != "roundtrip" and not job.avoid_agents


def bundle_size(capacities: Iterable[int]) -> int:
    """The most jobs a bundle to a country carries, its live agents' `capacity` given (0: an
    agent that does not say): `BUNDLE_MAX`, at most the smallest agent's slots, so whichever
    agent pulls it can start them all."""
    return max(1, min([BUNDLE_MAX, *(c for c in capacities if c > 0)]))


def outgoing(
    jobs: Sequence[CheckJob],
    bundling: frozenset[str],
    size: int = BUNDLE_MAX,
    sizes: Mapping[str, int] | None = None,
) -> list[Outgoing]:
    """`jobs` as JOBS messages: each bundle-able job of a country in `bundling` in a bundle of
    up to `size` (or the country's `sizes`, when less), in order; every other job alone. A
    bundle's `Nats-Msg-Id` is its first job's id and its length, so publishing the same jobs
    again forms and dedupes the same bundles."""
    out: list[Outgoing] = []
    together: dict[str, list[CheckJob]] = {}
    for job in jobs:
        if job.country in bundling and may_bundle(job):
            together.setdefault(job.country, []).append(job)
        else:
            out.append(Outgoing(jobs_subject(job.country), encode(job), job.job_id))
    for country, group in together.items():
        subject = jobs_subject(country)
        most = min(size, (sizes or {}).get(country, size))
        for start in range(0, len(group), most):
            part = group[start : start + most]
            if len(part) == 1:
                out.append(Outgoing(subject, encode(part[0]), part[0].job_id))
            else:
                payload = encode_bundle([encode(job) for job in part])
                out.append(Outgoing(subject, payload, f"{part[0].job_id}+{len(part)}"))
    return out
