"""API throughput: GET one monitor, list 50, create; wrk on loopback against one worker process.

Target (issue 2): GET one >= 2,500 req/s with p99 <= 20 ms.
"""

import json

from testkit.common import Stack, WrkResult, machine, wrk

SECONDS = 10
CONNECTIONS = 16


def line(name: str, result: WrkResult, target: str = "") -> str:
    return (
        f"  {name:<22} {result.requests_per_s:>9.0f} req/s   p50 {result.p50_ms:6.2f} ms"
        f"   p99 {result.p99_ms:6.2f} ms   errors {result.errors}  {target}"
    )


def run() -> bool:
    stack = Stack()
    try:
        seeded = stack.seed(1000)
        url = stack.serve()
        auth = {"Authorization": f"Bearer {seeded.token}"}
        warm = wrk(
            f"{url}/api/smtp-monitors/{seeded.monitor_ids[0]}",
            seconds=2,
            connections=CONNECTIONS,
            headers=auth,
        )
        assert warm.errors == 0, "GET one answered errors"
        get_one = wrk(
            f"{url}/api/smtp-monitors/{seeded.monitor_ids[500]}",
            seconds=SECONDS,
            connections=CONNECTIONS,
            headers=auth,
        )
        list_50 = wrk(
            f"{url}/api/smtp-monitors?perPage=50",
            seconds=SECONDS,
            connections=CONNECTIONS,
            headers=auth,
        )
        body = json.dumps(
            {
                "customerId": seeded.customer_id,
                "name": "bench",
                "hostname": "smtp.example.com",
                "smtpConfig": {"auth": {"user": "u", "pass": "p"}},
            }
        )
        create = wrk(
            f"{url}/api/smtp-monitors",
            seconds=SECONDS,
            connections=CONNECTIONS,
            headers={**auth, "Content-Type": "application/json"},
            script=f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n",
        )
        ok = get_one.requests_per_s >= 2500 and get_one.p99_ms <= 20 and get_one.errors == 0
        print(f"API, one worker process ({machine()}); wrk -t1 -c{CONNECTIONS} -d{SECONDS}s")
        print(
            line(
                "GET one monitor",
                get_one,
                f"target >= 2500 req/s, p99 <= 20 ms: {'PASS' if ok else 'FAIL'}",
            )
        )
        print(line("GET list (50)", list_50))
        print(line("POST create", create))
        return ok
    finally:
        stack.close()
