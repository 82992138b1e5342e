"""A channel endpoint's URL as the sender reads it: parsed by httpx, the parser that sends it, so
that the API never accepts a URL the sender cannot send, nor one whose host means something
else to the resolver than it looks.

The host must be a DNS name of letters, digits, `-` and `_` (an internationalised name in its
IDNA form), a dotted-quad IPv4 address or an IPv6 literal. Refused: a name whose last label is
a number (`2130706434`, `0x7f.1`, `127.1`, `0177.0.0.2`, which resolvers read as IPv4 addresses
in other bases or shorthands), an IPv6 zone id, an empty host, user info, a port outside
1-65535, and a URL the standard library reads with another host than httpx.
"""

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

import httpx
import idna

_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMBER: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")


def problem(url: str) -> str | None:
    """What is wrong with `url` as an http(s) endpoint before any lookup, or None; never repeats
    the URL (some are credentials)."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
        other = urlsplit(url).hostname
    except (httpx.InvalidURL, ValueError):  # idna's errors are ValueErrors
        return "is not a valid URL"
    if parsed.scheme not in ("https", "http"):
        return "must be an https:// URL"
    if parsed.userinfo:
        return "must not hold credentials (user:password@)"
    if port is not None and not 1 <= port <= 65535:
        return "must have a port from 1 to 65535"
    host = parsed.raw_host.decode("ascii", "replace").lower()
    if not host:
        return "must name a host"
    if why := host_problem(host):
        return f"has a host that is {why}"
    if (other or "") != parsed.host.lower():
        return "must name its host unambiguously"
    return None


def host_problem(host: str) -> str | None:
    """What `host` (ASCII, lowercase, as httpx sends it) is instead of a DNS name, a dotted-quad
    IPv4 address or an IPv6 address, or None."""
    if ":" in host:
        if "%" in host:
            return "an IPv6 address with a zone id"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "no IPv6 address"
        return None
    labels = host.removesuffix(".").split(".")
    if _NUMBER.fullmatch(labels[-1]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "a number that is not a dotted-quad IPv4 address"
        return None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "no DNS name"
    try:
        for label in labels:
            if label.startswith("xn--"):
                idna.decode(label)
    except idna.IDNAError:
        return "no valid internationalised name"
    return None
