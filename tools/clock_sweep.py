"""`make clock-sweep`: the suites that read the date, run at the hours where date bugs show.

A test that assumes the hour of the day fails only at some hours (a round just before midnight,
yesterday not yet closed by the packers).

Each run starts the suites' test processes under libfaketime (Debian's `faketime`) with the clock
moved to one time of tomorrow (UTC): a minute before midnight (the run crosses it), just after
it, after the packers' horizon, early morning and midday. The clock keeps running from there, and
the test servers the processes start (PostgreSQL, the mail and DNS peers written in Python)
inherit the moved clock, so the database's `now()` and the tests' agree.

Left out, because libfaketime cannot move their clocks: the tests of Alertmanager (a Go program;
Go reads the clock without libc), of the report mailbox and of OAuth2 logins (Dovecot clears its
processes' environment, so its token checks run on the real clock), and the browser tests. NATS
is a Go program too; nothing in these suites asks it the time of day.

    python tools/clock_sweep.py [--at HH:MM:SS ...] [--workers N] [suite ...]
"""

import argparse
import glob
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

TIMES = ("23:59:00", "00:00:20", "00:28:00", "01:05:00", "02:10:00", "09:30:00")
SUITES = ("tests/pipeline", "tests/reports", "tests/alerting", "tests/console")
LEFT_OUT = "not mailbox and not alertmanager and not browser and not oauth"
LIBRARY = "/usr/lib/*/faketime/libfaketimeMT.so.1"


def offset_to(at: str, now: datetime) -> int:
    """Seconds from `now` to `at` (HH:MM:SS, UTC) tomorrow."""
    hour, minute, second = (int(part) for part in at.split(":"))
    tomorrow = (now + timedelta(days=1)).replace(
        hour=hour, minute=minute, second=second, microsecond=0
    )
    return int((tomorrow - now).total_seconds())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", nargs="+", default=list(TIMES), help="UTC times of day")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("suites", nargs="*", default=list(SUITES))
    args = parser.parse_args()
    found = glob.glob(LIBRARY)
    if not found:
        print("clock-sweep: libfaketime not found (Debian's faketime package)", file=sys.stderr)
        return 2
    failed: list[str] = []
    for at in args.at:
        env = dict(os.environ, LD_PRELOAD=found[0])
        env["FAKETIME"] = f"+{offset_to(at, datetime.now(UTC))}s"
        print(f"clock-sweep: the suites at {at} UTC", flush=True)
        started = time.monotonic()
        pytest = ["pytest", "-q", "-n", str(args.workers), "--dist", "loadfile"]
        code = subprocess.call(
            [sys.executable, "-m", *pytest, "-p", "no:cacheprovider", "-k", LEFT_OUT, *args.suites],
            env=env,
        )
        print(f"clock-sweep: {at} UTC: exit {code} in {time.monotonic() - started:.0f} s")
        if code:
            failed.append(at)
    print(f"clock-sweep: failed at {', '.join(failed)}" if failed else "clock-sweep: all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
