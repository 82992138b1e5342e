"""Which addresses nobody outside the operator's network may make us connect to: anything but a
globally routable unicast address, judged also by the IPv4 address an IPv6 one carries. One
rule for the agents' check targets (agent.probers.run, agent.sidechecks), the controller's OAuth2
token fetcher (controller.oauth2) and its outbound notification calls (controller.notify.egress).
Pure."""

import ipaddress

NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def is_blocked(address: str) -> bool:
    """True for anything but a globally routable unicast address, judged also by the IPv4
    address an IPv6 one carries: a packet to it ends up there."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _not_public(ip)
    # IPv4-mapped and NAT64 (RFC 6052 forbids its well-known prefix for non-global IPv4) are
    # that IPv4 address, nothing else: judged as it, so DNS64 agents still reach public ones.
    translated = ip.ipv4_mapped or (_nat64_ipv4(ip) if ip in NAT64_WELL_KNOWN else None)
    if translated is not None:
        return _not_public(translated)
    # 6to4 and Teredo: relays deliver to the IPv4 address inside, so it must be public too.
    tunnelled = [ip.sixtofour, *(ip.teredo or ())]
    return _not_public(ip) or any(v4 is not None and _not_public(v4) for v4 in tunnelled)


def _nat64_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        # fec0::/10, deprecated (RFC 3879) but still routed inside some networks
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )
