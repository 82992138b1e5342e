"""The controller's settings, one group per concern, each a Struct of the environment variables
it reads (a field's encoded name is its variable) and the checks of those alone: the process's
own (process.py), the API's surfaces (web.py), the checks (checks.py), the alerter's notices and
reports (notices.py).

`ControllerSettings` holds the groups and `shared.settings.load` fills each from the environment,
so a missing or malformed variable still stops `serve` at start with one line naming it, whatever
roles the process runs. The composition root (controller.runtime.serve) hands each component its
group, never the whole. `python -m controller.settings` prints the table of docs/settings.md.
"""

import msgspec

from controller.settings.checks import (
    BlocklistSettings,
    FairUseSettings,
    OAuth2Settings,
    RetentionSettings,
    SchedulingSettings,
)
from controller.settings.notices import (
    AlertingSettings,
    NoticeBudgetSettings,
    NotifySettings,
    ReportsSettings,
    check_public_url,
)
from controller.settings.process import (
    CONTROLLER_ROLES,
    DatabaseSettings,
    FleetSettings,
    RuntimeSettings,
    SecretsSettings,
    StreamSettings,
    check_secrets_key,
)
from controller.settings.web import AccessSettings, ApiSettings, StatusPageSettings
from shared.settings import ProcessSettings

__all__ = [
    "CONTROLLER_ROLES",
    "AccessSettings",
    "AlertingSettings",
    "ApiSettings",
    "BlocklistSettings",
    "ControllerSettings",
    "DatabaseSettings",
    "FairUseSettings",
    "FleetSettings",
    "NoticeBudgetSettings",
    "NotifySettings",
    "OAuth2Settings",
    "ReportsSettings",
    "RetentionSettings",
    "RuntimeSettings",
    "SchedulingSettings",
    "SecretsSettings",
    "StatusPageSettings",
    "StreamSettings",
    "check_public_url",
    "check_secrets_key",
]


class ControllerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Every group of the controller's settings; `shared.settings.load` fills each from the
    environment. Build one in code with `of` (the variables' names, lower-case) and change one
    with `replace`."""

    process: ProcessSettings
    database: DatabaseSettings
    runtime: RuntimeSettings
    secrets: SecretsSettings
    streams: StreamSettings
    fleet: FleetSettings
    api: ApiSettings
    access: AccessSettings
    fair_use: FairUseSettings
    scheduling: SchedulingSettings
    retention: RetentionSettings
    alerting: AlertingSettings
    notify: NotifySettings
    budget: NoticeBudgetSettings
    reports: ReportsSettings
    reputation: BlocklistSettings
    oauth2: OAuth2Settings
    status_pages: StatusPageSettings

    @property
    def roles(self) -> frozenset[str]:
        return self.runtime.roles

    def __post_init__(self) -> None:
        if self.oauth2.oauth2_token_fetches >= self.database.db_pool_max:
            raise ValueError("OAUTH2_TOKEN_FETCHES must be below DB_POOL_MAX")

    @classmethod
    def of(cls, **values: object) -> "ControllerSettings":
        """The settings from `values` by their variables' names in lower case (DATABASE_URL:
        `database_url`), each group's defaults for the rest; each group checked as at start."""
        split = _split(values)
        groups = {f.name: f.type for f in msgspec.structs.fields(cls)}
        return msgspec.convert(
            {
                # by the variables' names, as the environment gives them
                name: msgspec.convert(
                    {k.upper(): v for k, v in split.get(name, {}).items()}, type=group, strict=False
                )
                for name, group in groups.items()
            },
            type=cls,
        )

    def replace(self, **values: object) -> "ControllerSettings":
        """A copy with `values` (as `of` takes them) changed, each changed group checked again."""
        current = {f.name: getattr(self, f.name) for f in msgspec.structs.fields(self)}
        for name, changes in _split(values).items():
            current[name] = msgspec.structs.replace(current[name], **changes)
        return msgspec.convert(current, type=type(self))


def _split(values: dict[str, object]) -> dict[str, dict[str, object]]:
    """`values` by the group (its field name in ControllerSettings) that declares each; a name
    no group declares is a TypeError, as a misspelt keyword is."""
    owners = {
        field: group.name
        for group in msgspec.structs.fields(ControllerSettings)
        for field in group.type.__struct_fields__
    }
    if unknown := set(values) - set(owners):
        raise TypeError(f"no controller setting {sorted(unknown)[0]!r}")
    split: dict[str, dict[str, object]] = {}
    for key, value in values.items():
        split.setdefault(owners[key], {})[key] = value
    return split
