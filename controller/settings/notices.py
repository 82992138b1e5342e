"""The settings of what the alerter tells and takes: judging rounds, notices (channels, links,
budgets) and TLS-RPT/DMARC reports."""

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from shared.settings import check_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_public_url(value: str) -> None:
    """PUBLIC_URL: an http(s) URL of a host, no credentials, query or fragment (a notice's link
    is this plus a path)."""
    check_url("PUBLIC_URL", value, ("http", "https"), many=False)
    parts = urlsplit(value)
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            "PUBLIC_URL must be a base URL like https://mailprobe.example.com (a host and at most"
            " a path: no credentials, query or fragment)"
        )


class AlertingSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Rounds judged into states and incidents: the `alerter` role."""

    notify_reminder_minutes: Annotated[
        int,
        Meta(ge=0, le=10_080, description="reminder while a monitor stays down; `0`: none"),
    ] = 60
    login_backoff_max_minutes: Annotated[
        int,
        Meta(
            ge=1,
            le=10_080,
            description="after a round whose credentials were rejected (`auth`), checks that "
            "log in wait 2, 4, 8, … intervals, at most this many minutes, then one country "
            "logs in (the next one each round that neither logs in nor is rejected); a "
            "successful login or new credentials end it",
        ),
    ] = 360
    incident_no_data_close_minutes: Annotated[
        int,
        Meta(
            ge=0,
            le=10_080,
            description="an open incident whose rounds have all been missed (no agent, "
            "expired, inconclusive, `login_capped`, …) for this many minutes and at least 3 "
            "rounds is closed for lack of data: the state becomes `missed`, never `up`, and "
            "those told of the outage are told it closed without a recovery; `0`: never",
        ),
    ] = 60
    incident_group_wait_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=3600,
            description="an incident's first notice waits at most this long for other "
            "monitors failing on the same server or dependency to join it (one notice for one "
            "mail-flow problem); it goes sooner, as soon as its monitors' siblings (the same "
            "host name, `dependsOn`; each checked at once by a confirmation round) are judged",
        ),
    ] = 10
    incident_group_interval_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=86_400,
            description="an incident's notice of a change (a monitor, a country or a cause "
            "joining it) comes at least this long after its notice before",
        ),
    ] = 300
    alert_eval_interval_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=60,
            description="how often the alerter looks for monitors to evaluate and "
            "notifications to send",
        ),
    ] = 1.0


class NotifySettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """How notices go out (channels, their networks, attempts) and where they link."""

    notify_smtp_url: Annotated[
        str | None,
        Meta(
            description="relay for alert e-mails: `smtp://user:pass@host:port` (STARTTLS when "
            "offered) or `smtps://…` (TLS from the first byte); unset: this controller sends "
            "no e-mail (alerts wait for a controller that has it)"
        ),
    ] = None
    notify_from: Annotated[
        str | None,
        Meta(description="sender of alert e-mails, e.g. `mailprobe <alerts@example.com>`"),
    ] = None
    notify_sms_webhook_url: Annotated[
        str | None,
        Meta(
            description='SMS gateway webhook: JSON POST `{"to", "text"}`; unset: this '
            "controller sends no SMS (alerts wait for a controller that has it; see Alerts and "
            "notifications)"
        ),
    ] = None
    notify_private_network_grants: Annotated[
        str,
        Meta(
            description="private networks an organization's notification channels may reach "
            "though they are not public, and over plain `http://` (an in-house Alertmanager): "
            "grants separated by `;`, each an organization's id (the API's `organizationId`) "
            "or `*` (every organization), `=`, and networks (addresses or CIDR, "
            "comma-separated), e.g. `3=10.0.0.0/8,192.168.1.5;7=fd00::/8`; an organization "
            "without a grant reaches public `https://` endpoints only, by the rules checks use"
        ),
    ] = ""
    notify_allow_private_networks: Annotated[
        str,
        Meta(
            description="retired: it opened the networks to every organization at once. Set, "
            "the controller stops at start and says how to write it as "
            "`NOTIFY_PRIVATE_NETWORK_GRANTS` (`*=<networks>` keeps every organization's grant)"
        ),
    ] = ""
    public_url: Annotated[
        str | None,
        Meta(
            description="the base URL people reach this deployment at, e.g. "
            "`https://mailprobe.example.com` (the console is under `/console/`): every notice "
            "links to its monitor's console page there, status pages' feeds and mails to the "
            "page; unset: notices name the monitor's id and carry no link, and status pages "
            "take no subscriptions"
        ),
    ] = None
    notify_max_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="delivery attempts of one notification (exponential backoff up to an "
            "hour apart) before it is marked failed",
        ),
    ] = 40
    notify_senders: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="notifications one controller's outbox worker sends at once (each one "
            "connection: relays limit connections per client, and the worker's own connections "
            "never pass it)",
        ),
    ] = 10
    notify_org_sender_share: Annotated[
        float,
        Meta(
            gt=0,
            le=1,
            description="share of `NOTIFY_SENDERS` one organization's notifications may hold "
            "while another organization's wait (at least one; alone, an organization may use "
            "them all): one organization's notices, however many and however slow their "
            "channels, never hold another's",
        ),
    ] = 0.5

    @property
    def notify_private_grants(self) -> dict[int | Literal["*"], list[Network]]:
        """NOTIFY_PRIVATE_NETWORK_GRANTS, parsed: networks by organization id, or by `*` for
        every organization."""
        name = "NOTIFY_PRIVATE_NETWORK_GRANTS"
        found: dict[int | Literal["*"], list[Network]] = {}
        for grant in (g.strip() for g in self.notify_private_network_grants.split(";")):
            if not grant:
                continue
            who, sep, nets = (part.strip() for part in grant.partition("="))
            org: int | Literal["*"]
            if who == "*":
                org = "*"
            elif who.isascii() and who.isdigit() and 1 <= int(who) < 2**63:
                org = int(who)
            else:
                raise ValueError(
                    f"{name}: {who!r} is not an organization id or * (grants are"
                    " `<id>=<networks>` separated by `;`)"
                )
            listed = [n.strip() for n in nets.split(",") if n.strip()]
            if not sep or not listed or org in found:
                what = "is granted twice" if org in found else "has no `=<networks>`"
                raise ValueError(f"{name}: organization {who} {what}")
            found[org] = []
            for net in listed:
                try:
                    found[org].append(ipaddress.ip_network(net, strict=False))
                except ValueError:
                    raise ValueError(
                        f"{name}: {net!r} (organization {who}) is not an IP address or CIDR network"
                    ) from None
        return found

    def __post_init__(self) -> None:
        if self.notify_allow_private_networks:
            raise ValueError(
                "NOTIFY_ALLOW_PRIVATE_NETWORKS is retired: it opened the networks to every"
                " organization. Grant them per organization in NOTIFY_PRIVATE_NETWORK_GRANTS"
                " (`<organization id>=<networks>;…`), or `*=<networks>` to keep every"
                " organization's grant (docs/settings.md)"
            )
        self.notify_private_grants  # noqa: B018  # raises ValueError naming the setting
        if self.notify_smtp_url is not None:
            check_url("NOTIFY_SMTP_URL", self.notify_smtp_url, ("smtp", "smtps"), many=False)
            parts = urlsplit(self.notify_smtp_url)
            try:
                parts.port  # noqa: B018  # raises ValueError on a bad port
            except ValueError:
                raise ValueError("NOTIFY_SMTP_URL has an invalid port") from None
            if not parts.hostname:
                raise ValueError("NOTIFY_SMTP_URL names no host")
            if self.notify_from is None or "@" not in self.notify_from:
                raise ValueError("NOTIFY_FROM (an e-mail address) is required with NOTIFY_SMTP_URL")
        if self.public_url is not None:
            check_public_url(self.public_url)
        if self.notify_sms_webhook_url is not None:
            check_url(
                "NOTIFY_SMS_WEBHOOK_URL", self.notify_sms_webhook_url, ("http", "https"), many=False
            )


class NoticeBudgetSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Notifications per organization and clock hour, one budget per source and channel family
    (notify.budget)."""

    org_max_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="e-mail notifications one organization has sent per clock hour (UTC) "
            "at most, each counted once whatever its retries; past it they are not sent but "
            "recorded `dropped` in their monitor's alert history, and the organization's owners "
            "get one notice an hour",
        ),
    ] = 500
    org_max_sms_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="SMS notifications one organization has sent per clock hour (UTC) at "
            "most, as `ORG_MAX_NOTIFICATIONS_PER_HOUR` for e-mail (each SMS costs money: a "
            "budget of its own)",
        ),
    ] = 100
    org_max_channel_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications one organization's channels (webhook, Slack, Teams, "
            "PagerDuty, Opsgenie, Alertmanager) have sent per clock hour (UTC) at most, all "
            "together and each counted once, as `ORG_MAX_NOTIFICATIONS_PER_HOUR` for e-mail; "
            "a channel's test counts too",
        ),
    ] = 500
    org_max_subscriber_mails_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="e-mails to the subscribers of one organization's status pages "
            "(confirmations and updates) sent per clock hour (UTC) at most, a budget apart "
            "from `ORG_MAX_NOTIFICATIONS_PER_HOUR` so subscribers never use up the alerts'; "
            "past it they are dropped, recorded in the outbox",
        ),
    ] = 1000
    org_max_finding_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications of findings (posture, certificate expiry, blocklists, "
            "side checks) one organization has sent per clock hour (UTC) at most, on each of "
            "e-mail, SMS (at most `ORG_MAX_SMS_PER_HOUR`) and its channels together: a budget "
            "of its own, so findings never use up the outage notices' "
            "(`ORG_MAX_NOTIFICATIONS_PER_HOUR` and the others); past it they are `dropped` with "
            "why and the owners get one notice an hour",
        ),
    ] = 200
    org_max_report_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications of findings from TLS-RPT and DMARC reports (which "
            "strangers write) one organization has sent per clock hour (UTC) at most, per "
            "family as `ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR`: a budget of its own",
        ),
    ] = 50
    org_max_account_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications about monitors' logins and delivery (back-off, login "
            "cap, OAuth2 tokens refused, round trips not delivered; channel tests too) one "
            "organization has sent per clock hour (UTC) at most, per family as "
            "`ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR`: a budget of its own",
        ),
    ] = 100
    org_max_fleet_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications of the operator's findings about the fleet one "
            "organization has sent per clock hour (UTC) at most, per family as "
            "`ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR`: a budget of its own",
        ),
    ] = 100


class ReportsSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """TLS-RPT and DMARC reports: taken over HTTPS (`api`) and from mailboxes (`alerter`)."""

    reports_retention_days: Annotated[
        int,
        Meta(
            ge=1,
            le=3650,
            description="days a received TLS-RPT or DMARC report (its counts) and a rejected "
            "report are kept, from when they arrived",
        ),
    ] = 400
    reports_posts_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="TLS-RPT reports one client address may POST per minute to "
            "`/reports/tls/...`, per replica; past it 429",
        ),
    ] = 60
    reports_mailbox_interval_seconds: Annotated[
        int,
        Meta(
            ge=60,
            le=86_400,
            description="seconds between two reads of an organization's report mailbox "
            "(`/api/report-mailbox`) by the alerter role",
        ),
    ] = 300
    reports_mailbox_allow_private: Annotated[
        bool,
        Meta(
            description="let the controller read report mailboxes at private and loopback "
            "addresses (labs and tests only, as `OAUTH2_ALLOW_PRIVATE_ENDPOINTS`)"
        ),
    ] = False
    reports_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,  # with parse.MAX_COUNT, what keeps a domain's summed counts a bigint
            description="reports an organization may have taken about one domain per clock hour "
            "(HTTPS and mail together); past it a report is refused `too_many_reports`",
        ),
    ] = 200
    report_rows_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000_000,
            description="report rows (TLS failure details, DMARC records) an organization may "
            "have taken about one domain per clock hour; past it a report is refused "
            "`too_many_rows`",
        ),
    ] = 200_000
    report_rows_kept: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000_000,
            description="aggregate rows (per day, reporter, result, MX and IP) an organization "
            "may store about one domain; past it the reporter holding the most rows loses its "
            "oldest days first (each reporter's share bounded, docs/api.md), else the report is "
            "refused `rows_kept_full`",
        ),
    ] = 1_000_000
    report_token_grace_hours: Annotated[
        int,
        Meta(
            ge=0,
            le=24 * 90,
            description="hours a domain's previous TLS-RPT token is still accepted after it was "
            "rotated (time to publish the new record)",
        ),
    ] = 72
    report_digest_minutes: Annotated[
        int,
        Meta(
            ge=1,
            le=24 * 60,
            description="after a report finding's notice, minutes its monitor's further report "
            "news waits to go out together as one digest",
        ),
    ] = 60
