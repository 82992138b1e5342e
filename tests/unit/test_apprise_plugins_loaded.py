"""Apprise's plugins (some 200 modules, a fifth of a controller process's import) load at the
first Apprise URL a process reads, not when the API's modules are imported."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import controller.web.app
from controller.notify import apprise_channel

def plugins():
    return {m for m in sys.modules if m.startswith("apprise.plugins.")} - {"apprise.plugins.base"}

print(len(plugins()))
print(apprise_channel.url_problem("jsons://example.com/hook", []))
print("apprise.plugins.custom_json" in plugins())
"""


def test_the_plugins_load_at_the_first_url_read_and_not_at_import() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    at_import, problem, loaded = run.stdout.split("\n")[:3]
    assert at_import == "0"
    # the URL is taken, which needs its plugin: loaded then
    assert problem == "None"
    assert loaded == "True"
