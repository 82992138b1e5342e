"""The settings every role's process uses: which roles it runs, PostgreSQL, secrets at rest and
the countries' sealing keys, the streams, the live agents."""

import base64
import binascii
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.sealing import SealingError, read_public_keys
from shared.settings import check_secrets_filled, check_url, is_placeholder
from shared.streams import EVENTS_MAX_BYTES, MIB, RESULTS_MAX_BYTES

CONTROLLER_ROLES = frozenset({"api", "scheduler", "ingester", "alerter"})


def check_secrets_key(value: str) -> None:
    """SECRETS_KEY: one or more comma-separated Fernet keys (the first encrypts, all decrypt)."""
    if any(is_placeholder(key) for key in value.split(",")):
        raise ValueError(
            "SECRETS_KEY holds a template's placeholder: generate a key"
            " (python -m deploy.gen_env, or python -m controller gen-key)"
        )
    for key in value.split(","):
        try:
            raw = base64.urlsafe_b64decode(key.strip().encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "SECRETS_KEY must be comma-separated url-safe base64 32-byte keys "
                "(make one with: python -m controller gen-key)"
            )


class RuntimeSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Which roles this process runs, and where it is probed when the API is not one of them."""

    controller_roles: Annotated[
        str,
        Meta(description="roles `serve` runs, comma-separated; leave some out to scale them apart"),
    ] = "api,scheduler,ingester,alerter"
    controller_metrics_host: Annotated[
        str,
        Meta(description="address of `/metrics`, `/health` and `/ready` without the `api` role"),
    ] = "0.0.0.0"
    controller_metrics_port: Annotated[
        int,
        Meta(
            ge=0,
            le=65535,
            description="port of `/metrics`, `/health` and `/ready` when `CONTROLLER_ROLES` has "
            "no `api` (with it they are on `API_PORT`); `0`: none",
        ),
    ] = 9465

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.controller_roles.split(",") if r.strip())

    def __post_init__(self) -> None:
        if unknown := self.roles - CONTROLLER_ROLES:
            raise ValueError(
                f"CONTROLLER_ROLES names an unknown role {sorted(unknown)[0]!r}"
                f" (known: {', '.join(sorted(CONTROLLER_ROLES))})"
            )


class DatabaseSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """PostgreSQL: every role."""

    database_url: Annotated[
        str,
        Meta(
            description="PostgreSQL URL, `postgresql://user:pass@host:5432/db` (required); the"
            " sessions are named `mailprobe controller`, the process's roles and `ids3`"
            " (`application_name`, seen in `pg_stat_activity`; `ids3`: it lets scheduled rounds"
            " have seeded job ids, JOB_IDS_SEEDED) unless the URL names them (its watch then"
            " switches every controller to keyed ids, and other controllers cannot tell its"
            " version). With a"
            " standby, list both hosts and ask for the writable one, libpq's way:"
            " `postgresql://user:pass@db1:5432,db2:5432/db?target_session_attrs=read-write`:"
            " every new connection goes to whichever host is primary then"
        ),
    ]
    db_pool_max: Annotated[int, Meta(ge=2, le=500, description="PostgreSQL pool size")] = 20

    def __post_init__(self) -> None:
        # One URL, its hosts comma-separated (libpq's multi-host form): not a list of URLs.
        check_url("DATABASE_URL", self.database_url, ("postgres", "postgresql"), many=False)
        check_secrets_filled("DATABASE_URL", self.database_url, many=False)


class SecretsSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Secrets at rest (every role that reads or writes them) and the countries' sealing keys
    (the scheduler's jobs)."""

    secrets_key: Annotated[
        str | None,
        Meta(description="Fernet key(s) encrypting monitor secrets at rest; required by `serve`"),
    ] = None
    seal_public_keys_dir: Annotated[
        str | None,
        Meta(
            description="directory of the countries' public sealing keys, one `CC.pub` each "
            "(`python -m deploy.mint_country` makes them), re-read when they change; a job with "
            "credentials goes only to a country with a key, else its round is recorded missed "
            "(`no_seal_key`)"
        ),
    ] = None

    def __post_init__(self) -> None:
        if self.secrets_key is not None:
            check_secrets_key(self.secrets_key)
        if self.seal_public_keys_dir is not None:
            try:
                read_public_keys(self.seal_public_keys_dir)
            except (SealingError, OSError) as exc:
                raise ValueError(f"SEAL_PUBLIC_KEYS_DIR cannot be used: {exc}") from None


class StreamSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """The JetStream streams every role ensures at start."""

    results_retention_days: Annotated[
        float, Meta(gt=0, description="days of history the `RESULTS` stream keeps")
    ] = 7
    results_max_mib: Annotated[
        int,
        Meta(
            ge=1,
            description="size cap of the `RESULTS` stream in MiB; past it the oldest results go "
            "first, whatever their age",
        ),
    ] = RESULTS_MAX_BYTES // MIB
    events_max_mib: Annotated[
        int, Meta(ge=1, description="size cap of the `EVENTS` stream in MiB, oldest first")
    ] = EVENTS_MAX_BYTES // MIB
    stream_replicas: Annotated[
        Literal[1, 3, 5],
        Meta(
            description="JetStream servers each stream (`JOBS`, `RESULTS`, `EVENTS`) and its"
            " consumers are kept on: 1 on a single NATS server, 3 on the hub cluster of"
            " deploy/nats/ (any one server may be lost; 5: any two), at most the cluster's"
            " servers. A change moves the existing streams at the controller's next start,"
            " their messages kept"
        ),
    ] = 1


class FleetSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """The live agents (from heartbeats) and the fleet's health."""

    agents_per_country_max: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="live agents the controller holds per country; heartbeats of further "
            "agent ids of that country are dropped (logged), so no country crowds out another",
        ),
    ] = 500
    fleet_saturated_ratio_max: Annotated[
        float,
        Meta(
            ge=0.0,
            le=1.0,
            description="the share of a country's rounds within 15 minutes that may be recorded"
            " `saturated` before it is a `saturation` fleet finding (docs/operating.md)",
        ),
    ] = 0.05
    accept_unsealed_side_facts: Annotated[
        bool,
        Meta(
            description="take the side facts of results that do not echo their job's sealed"
            " asks (agents older than sealed asks), cut to what they name: true only while"
            " such agents drain during an upgrade; false (the default): such facts are dropped,"
            " logged and counted (docs/operating.md)",
        ),
    ] = False
