"""The central side's peer for `make bench scale` (issue 70): Debian's Prometheus scraping Debian's
prometheus-blackbox-exporter for the same targets at the same rate, in the same invocation.

The same SMTP responder (testkit.smtp_responder) as the product's run, `monitors` targets per
country (one target per monitor and country, told apart by their labels), scraped every
`interval` seconds through one exporter whose `smtp_plain` module holds the same dialogue as a
plain SMTP check (greeting, EHLO, QUIT). `servers` Prometheus servers each scrape every target
(an HA pair is two, as Prometheus HA does). After the warm-up, the CPU of the Prometheus servers
(utime + stime from /proc) over the window, divided by the probes one server stored in it (its
`probe_success` samples), is the figure set beside the product's central CPU per check; the
exporter's CPU is the agents' counterpart, printed, not central.

What Prometheus does later and the window leaves out (head compaction every 2 h), the product's
run leaves out in kind (packing an hour 30 min after it ends).
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shared import embedded
from testkit.common import busy_line, child_env, cpu_s, http_ok, machine_cpu_s

PROMETHEUS = "/usr/bin/prometheus"
EXPORTER = "/usr/bin/prometheus-blackbox-exporter"
JOB = "smtp"
START_TIMEOUT_S = 60.0

EXPORTER_CONFIG = """modules:
  smtp_plain:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 "
        - send: "EHLO mailprobe\\r"
        - expect: "^250 "
        - send: "QUIT\\r"
        - expect: "^221 "
"""


def skip_reason() -> str | None:
    """None when both peers can run here, else why not."""
    for path, make in ((PROMETHEUS, "prometheus"), (EXPORTER, "blackbox")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (make {make} installs it)"
    return None


def prometheus_config(
    exporter_port: int, target: str, monitors: int, countries: tuple[str, ...], interval: int
) -> str:
    """Every monitor in every country a target of its own (its labels tell them apart), each
    probed through the exporter at `interval`."""
    groups = "\n".join(
        f'      - targets: ["{target}"]\n        labels: {{monitor: "{n}", country: "{c}"}}'
        for n in range(monitors)
        for c in countries
    )
    return (
        "global:\n"
        f"  scrape_interval: {interval}s\n"
        f"  scrape_timeout: {min(5, interval)}s\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    metrics_path: /probe\n"
        "    params: {module: [smtp_plain]}\n"
        "    static_configs:\n"
        f"{groups}\n"
        "    relabel_configs:\n"
        "      - source_labels: [__address__]\n"
        "        target_label: __param_target\n"
        "      - target_label: __address__\n"
        f"        replacement: 127.0.0.1:{exporter_port}\n"
    )


@dataclass(frozen=True)
class PeerFigures:
    """`servers` Prometheus servers each stored `probes` in the window, `succeeded` of them
    up; CPU ms per probe: the servers' together per probe one of them stored, the exporter's
    per probe it ran."""

    servers: int
    probes: int
    succeeded: int
    prometheus_ms: float
    exporter_ms: float
    window_s: float
    # The scrapes behind the probes: attempted, answered (`up`), and their duration (mean,
    # max): fewer attempted than due is Prometheus behind; attempted but not up (a timeout) is
    # the exporter or the target behind.
    scrapes: int = 0
    scrapes_up: int = 0
    scrape_mean_s: float = 0.0
    scrape_max_s: float = 0.0


def _query(port: int, expr: str, at: float) -> float:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr, "time": f"{at:.3f}"}
    )
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = json.load(resp)
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _wait(what: str, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not http_ok(url):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


def measure(
    monitors: int,
    countries: tuple[str, ...],
    interval: int,
    warmup_s: float,
    window_s: float,
    servers: int = 1,
) -> PeerFigures:
    tmp = Path(tempfile.mkdtemp(prefix="mailprobe-scale-peer-"))
    procs: list[subprocess.Popen[bytes]] = []
    logs = contextlib.ExitStack()
    try:
        smtp_port = embedded.free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "testkit.smtp_responder", str(smtp_port)],
                env=child_env(),
                stdout=subprocess.DEVNULL,
                stderr=logs.enter_context((tmp / "smtp.log").open("wb")),
            )
        )
        exporter_port = embedded.free_port()
        (tmp / "blackbox.yml").write_text(EXPORTER_CONFIG)
        exporter = subprocess.Popen(
            [
                EXPORTER,
                f"--config.file={tmp / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{exporter_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=logs.enter_context((tmp / "exporter.log").open("wb")),
        )
        procs.append(exporter)
        _wait("blackbox_exporter", f"http://127.0.0.1:{exporter_port}/-/healthy")
        (tmp / "prometheus.yml").write_text(
            prometheus_config(
                exporter_port, f"127.0.0.1:{smtp_port}", monitors, countries, interval
            )
        )
        ports = []
        for n in range(servers):
            port = embedded.free_port()
            ports.append(port)
            procs.append(
                subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={tmp / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp / f'tsdb-{n}'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=logs.enter_context((tmp / f"prometheus-{n}.log").open("wb")),
                )
            )
        proms = procs[-servers:]
        for port in ports:
            _wait("Prometheus", f"http://127.0.0.1:{port}/-/ready")
        time.sleep(warmup_s)
        t0 = time.time()
        prom0, exp0 = sum(cpu_s(p.pid) for p in proms), cpu_s(exporter.pid)
        responder0, machine0 = cpu_s(procs[0].pid), machine_cpu_s()
        time.sleep(window_s)
        prom = sum(cpu_s(p.pid) for p in proms) - prom0
        exp = cpu_s(exporter.pid) - exp0
        responder = cpu_s(procs[0].pid) - responder0
        t1 = time.time()
        print(
            f"  peer: share of a core over the window: Prometheus {prom / (t1 - t0):.0%},"
            f" blackbox_exporter {exp / (t1 - t0):.0%}, SMTP responder"
            f" {responder / (t1 - t0):.0%}; "
            + busy_line(machine0, machine_cpu_s(), prom + exp + responder),
            flush=True,
        )
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args!r} exited early; logs in {tmp}")
        # a scrape that started in the window is stored once it ends (its timeout at most)
        time.sleep(min(5, interval) + 0.5)
        span = f"{t1 - t0:.0f}s"
        probes = round(
            _query(ports[0], f'sum(count_over_time(probe_success{{job="{JOB}"}}[{span}]))', t1)
        )
        succeeded = round(
            _query(ports[0], f'sum(sum_over_time(probe_success{{job="{JOB}"}}[{span}]))', t1)
        )
        scrapes = round(_query(ports[0], f'sum(count_over_time(up{{job="{JOB}"}}[{span}]))', t1))
        scrapes_up = round(_query(ports[0], f'sum(sum_over_time(up{{job="{JOB}"}}[{span}]))', t1))
        duration = f'scrape_duration_seconds{{job="{JOB}"}}[{span}]'
        scrape_mean_s = _query(ports[0], f"avg(avg_over_time({duration}))", t1)
        scrape_max_s = _query(ports[0], f"max(max_over_time({duration}))", t1)
    finally:
        for proc in procs:
            embedded.stop(proc)
        logs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    per = max(probes, 1)
    return PeerFigures(
        servers,
        probes,
        succeeded,
        prom * 1000 / per,
        exp * 1000 / per / servers,
        t1 - t0,
        scrapes,
        scrapes_up,
        scrape_mean_s,
        scrape_max_s,
    )
