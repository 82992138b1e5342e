"""checkdmarc run in a network namespace of its own (`python -m tests.agent.checkdmarc_child`,
under `unshare -n`): only its loopback exists, so a query to any address but the loopback DNS
server started here fails at once (no route) and nothing leaves the machine. Reads the zones
and the domains as JSON on stdin; writes each domain's DMARC and SPF verdicts as JSON."""

import asyncio
import json
import sys
from typing import Any

import checkdmarc.dmarc
import checkdmarc.spf
import checkdmarc.utils
import dns.nameserver

from testkit.peers.dns import DnsPeer

TIMEOUT_S = 2.0


def _verdict(result: Any) -> dict[str, Any]:
    """What checkdmarc said, as JSON: the record, where it was found, and its error's class."""
    error = result.get("error")
    return {
        "record": result.get("record"),
        "location": result.get("location"),
        "valid": bool(result.get("valid")) and error is None,
        "error": error,
        "warnings": [str(w) for w in result.get("warnings", [])],
        "p": (result.get("tags") or {}).get("p", {}).get("value"),
    }


def _check(domain: str, port: int) -> dict[str, Any]:
    checkdmarc.utils.DNS_CACHE.clear()  # each zone's answers, not the one before's
    servers = [dns.nameserver.Do53Nameserver("127.0.0.1", port)]
    asked = {"nameservers": servers, "timeout": TIMEOUT_S, "retries": 0}
    return {
        "dmarc": _verdict(checkdmarc.dmarc.check_dmarc(domain, **asked)),
        "spf": _verdict(checkdmarc.spf.check_spf(domain, **asked)),
    }


async def main() -> None:
    given = json.load(sys.stdin)
    out: dict[str, Any] = {}
    for case, (domain, records) in given.items():
        zone = {(name, rdtype): texts for name, rdtype, texts in records}
        async with DnsPeer(zone) as peer:
            out[case] = await asyncio.to_thread(_check, domain, peer.port)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
