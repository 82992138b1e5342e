"""The TLS-RPT address and record to publish for a domain, as the API and the console show them.

The address is `PUBLIC_URL/reports/tls/{domain}/{token}` (controller.reports.tokens). RFC 8460
§3 allows only `https:` and `mailto:` in `rua=`: reporters post nowhere else, so an address
under a PUBLIC_URL that is not `https://` (`http://127.0.0.1:8080` under `make run`) comes with
a warning saying what to set; without PUBLIC_URL there is no address, and the warning says so.
Pure."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from controller.notify.links import Links
from controller.reports import tokens

TLS_PATH = "/reports/tls"


@dataclass(frozen=True, slots=True)
class Address:
    url: str | None  # the `rua=` address
    record: str | None  # the whole TXT record at _smtp._tls.<domain>
    warning: str | None  # what keeps reporters from using it, and what to set


def tls_rpt(
    links: Links, key: bytes, organization_id: int, domain: str, generation: int
) -> Address:
    if links.base is None:
        return Address(
            None,
            None,
            "PUBLIC_URL is not set: set it to the https:// address reporters reach this"
            " controller at, or publish a mailto: address your report mailbox reads",
        )
    token = tokens.token(key, organization_id, domain, generation)
    url = f"{links.base}{TLS_PATH}/{domain}/{token}"
    warning = None
    if urlsplit(links.base).scheme != "https":
        warning = (
            f"PUBLIC_URL is {links.base}, not https: RFC 8460 allows only https: and mailto:"
            " in rua=, so reporters will not post here. Set PUBLIC_URL to the https:// address"
            " reporters reach this controller at, or publish a mailto: address your report"
            " mailbox reads"
        )
    return Address(url, f"v=TLSRPTv1; rua={url}", warning)
