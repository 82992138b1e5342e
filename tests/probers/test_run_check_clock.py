"""A check runs on the clock the agent is given (issue 79), not the wall: a job is expired by
it, a result's times are its instants, and a certificate's days left are counted from it,
across a year's end, against real SMTP servers on loopback. (OpenSSL checks a certificate's
validity on the system's wall clock: its own, as docs/architecture.md says.)"""

import ssl
from datetime import UTC, datetime, timedelta

import msgspec

from agent.check_runner import CheckRunner
from agent.probers.tls import SslContexts
from shared.clock import WALL, ManualClock
from shared.messages import CheckJob, SmtpConfig
from shared.timefmt import iso_ms, parse_iso
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer

SCHEDULED = datetime(2026, 12, 31, 23, 59, 50, tzinfo=UTC)
EXPIRES = datetime(2027, 1, 1, 0, 0, 10, tzinfo=UTC)


def across_the_year(job: CheckJob, expires: datetime = EXPIRES) -> CheckJob:
    return msgspec.structs.replace(job, scheduled_at=iso_ms(SCHEDULED), expires_at=iso_ms(expires))


async def test_a_job_is_expired_by_the_clock_given_and_its_result_stamped_by_it(
    ssl_contexts: SslContexts,
) -> None:
    async with SmtpPeer() as peer:
        job = across_the_year(make_job("smtp", peer.port, SmtpConfig(), hostname="localhost"))
        clock = ManualClock(SCHEDULED + timedelta(seconds=5))
        runner = CheckRunner("DE-1", allow_private=True, ssl_contexts=ssl_contexts, clock=clock)
        ran = await runner.checked(job)
        assert (ran.status, ran.error_kind) == ("up", None), ran.message
        assert ran.started_at == "2026-12-31T23:59:55.000Z" == ran.finished_at

        clock.set(EXPIRES)  # the new year's tenth second: the job's life is over
        expired = await runner.checked(job)
        assert (expired.status, expired.error_kind) == ("down", "expired"), expired.message
        assert expired.started_at == "2027-01-01T00:00:10.000Z"
        assert expired.phases.dns_ms is None


async def test_a_certificates_days_left_are_counted_from_the_clock_given(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    clock = ManualClock(SCHEDULED)
    runner = CheckRunner("DE-1", allow_private=True, ssl_contexts=ssl_contexts, clock=clock)
    async with SmtpPeer(starttls=server_tls) as peer:
        job = make_job("smtp", peer.port, SmtpConfig(), hostname="localhost")
        first = await runner.checked(across_the_year(job))
        assert first.tls is not None and first.tls.cert_not_after is not None, first.message
        not_after = parse_iso(first.tls.cert_not_after)
        for before, days_left in [(timedelta(days=2.5), 2), (timedelta(days=-0.5), -1)]:
            clock.set(not_after - before)
            late = across_the_year(job, expires=clock.now() + timedelta(seconds=60))
            result = await runner.checked(late)
            assert result.tls is not None, result.message
            assert result.tls.cert_days_left == days_left, (clock.now(), result.tls)


async def test_an_untrusted_certificates_days_left_are_counted_from_the_clock_given(
    ssl_contexts: SslContexts, untrusted_tls: ssl.SSLContext
) -> None:
    """A certificate no CA vouches for fails the handshake; the second look that then reads its
    facts counts its days left from the check's clock too, not from the wall."""
    async with SmtpPeer(starttls=untrusted_tls) as peer:
        job = make_job("smtp", peer.port, SmtpConfig(), hostname="localhost")
        now = CheckRunner("DE-1", allow_private=True, ssl_contexts=ssl_contexts, clock=WALL)
        seen = await now.checked(job)
        assert seen.tls is not None and seen.tls.cert_not_after is not None, seen.message
        clock = ManualClock(parse_iso(seen.tls.cert_not_after) - timedelta(days=2.5))
        runner = CheckRunner("DE-1", allow_private=True, ssl_contexts=ssl_contexts, clock=clock)
        late = msgspec.structs.replace(
            job,
            scheduled_at=iso_ms(clock.now()),
            expires_at=iso_ms(clock.now() + timedelta(seconds=60)),
        )
        result = await runner.checked(late)
        assert result.status == "down" and result.tls is not None, result.message
        assert result.tls.chain_verified is False
        assert result.tls.cert_days_left == 2, result.tls
