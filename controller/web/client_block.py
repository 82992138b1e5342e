"""The block of addresses one client is counted by, in the API's connection caps and request
rate: an IPv4 address itself; an IPv6 address its /64, the block one subscriber gets, so that a
client cannot take a fresh share per address of its own block."""

import ipaddress

IPV6_PREFIX = 64


def client_block(address: str) -> str:
    """The block `address` is counted in (an address that does not parse: itself)."""
    if ":" not in address:  # IPv4 (or no address)
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network(f"{ip}/{IPV6_PREFIX}", strict=False))
