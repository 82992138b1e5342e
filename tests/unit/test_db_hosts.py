"""A multi-host DATABASE_URL (libpq's form) split into one URL per host, `connect_timeout`
taken as each host's wait rather than sent to the server as a setting."""

from controller.db.pool import CONNECT_TIMEOUT_PER_HOST_S, Hosts, _hosts


def test_each_host_gets_the_url_with_the_rest_of_it() -> None:
    hosts = Hosts(
        "postgresql://u:p%40ss@db1:5432,db2:5433/mailprobe"
        "?target_session_attrs=read-write&connect_timeout=3&sslmode=require"
    )
    assert hosts.urls == [
        "postgresql://u:p%40ss@db1:5432/mailprobe?target_session_attrs=read-write&sslmode=require",
        "postgresql://u:p%40ss@db2:5433/mailprobe?target_session_attrs=read-write&sslmode=require",
    ]
    assert hosts.timeout_s == 3.0


def test_one_host_without_connect_timeout_is_left_to_asyncpg() -> None:
    assert _hosts("postgresql://u@db1:5432/mailprobe") is None
    assert _hosts("postgresql://postgres@/postgres?host=/run/pg") is None
    one = _hosts("postgresql://u@db1/mailprobe?connect_timeout=2")
    assert one is not None and (one.urls, one.timeout_s) == (["postgresql://u@db1/mailprobe"], 2)
    assert Hosts("postgresql://a,b/db").timeout_s == CONNECT_TIMEOUT_PER_HOST_S
