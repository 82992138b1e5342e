"""An alerter wired as the composition root wires one (controller.runtime.pipeline,
`build_alerter`), from the settings a test or a benchmark sets."""

from collections.abc import Callable
from datetime import datetime

import asyncpg
from nats.js import JetStreamContext

from controller.alerting.alerter import Alerter
from controller.alerting.evaluator import BATCH
from controller.jobs.rules import JobIds
from controller.notify.links import NO_LINKS, Links
from controller.runtime.pipeline import build_alerter
from controller.settings import ControllerSettings
from shared.timefmt import utcnow

# The alerter reads no database setting (its pool is given), but every settings group is built.
UNUSED_DATABASE = "postgresql://testkit.invalid/unused"
# Unless a test sets them: a flow incident's notices go at once, as a lone monitor's do.
AT_ONCE = {"incident_group_wait_seconds": 0, "incident_group_interval_seconds": 0}


def wired_alerter(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    job_ids: JobIds,
    *,
    links: Links = NO_LINKS,
    batch: int = BATCH,
    clock: Callable[[], datetime] = utcnow,
    **values: object,
) -> Alerter:
    """`values`: settings by their variables' names in lower case (NOTIFY_REMINDER_MINUTES:
    `notify_reminder_minutes`), as `ControllerSettings.of` takes them, over `AT_ONCE` and the
    defaults."""
    settings = ControllerSettings.of(database_url=UNUSED_DATABASE, **(AT_ONCE | values))
    return build_alerter(settings, pool, js, job_ids, links, batch=batch, clock=clock)
