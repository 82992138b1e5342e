"""A loopback DNS server serving blocklist zones as tests want them (RFC 5782): healthy lists
with their test entries, a dead list that lists everything, lists answering error codes, a
slow list, CNAME loops and huge TXT records. A "country" is a server of its own: two agents
pointed at two of them see two versions of the same list, as anycast mirrors or resolvers in
two countries can differ.

`DnsblPeer(zones, ...)`: `zones` maps a zone to `Zone` (its listed names and what each
answers); `slow` delays every answer under those zones; `records` adds plain records (the
monitored host's A/AAAA, MX) as `testkit.peers.dns.DnsPeer` takes them.
"""

import asyncio
from dataclasses import dataclass, field

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from testkit.peers.dns import DnsPeer, Records


@dataclass
class Zone:
    """`listed`: query label (e.g. `2.0.0.127`, `test`) → A records; `everything`: the A
    records answered for any label (a dead list); `txt`: TXT per label (default: a short one
    for every listed label); `cname`: label → the name its answer is a CNAME to."""

    listed: dict[str, list[str]] = field(default_factory=dict)
    everything: list[str] | None = None
    txt: dict[str, str] = field(default_factory=dict)
    cname: dict[str, str] = field(default_factory=dict)


def healthy(**listed: list[str]) -> Zone:
    """An RFC 5782 IP list: 127.0.0.2 listed, 127.0.0.1 not, plus `listed` (label → A)."""
    return Zone(listed={"2.0.0.127": ["127.0.0.2"], **listed})


def healthy_domains(listed: dict[str, list[str]], test: str = "test") -> Zone:
    return Zone(listed={test: ["127.0.1.2"], **listed})


def label(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


class DnsblPeer(DnsPeer):
    def __init__(
        self,
        zones: dict[str, Zone],
        *,
        records: Records | None = None,
        slow: dict[str, float] | None = None,
    ) -> None:
        super().__init__(records or {})
        self.zones = {z.lower(): v for z, v in zones.items()}
        self.slow = {z.lower(): s for z, s in (slow or {}).items()}

    def _zone_of(self, name: str) -> tuple[str, str] | None:
        for zone in sorted(self.zones, key=len, reverse=True):
            if name.endswith(f".{zone}"):
                return zone, name.removesuffix(f".{zone}")
        return None

    def _response(self, wire: bytes) -> dns.message.Message | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        found = self._zone_of(name)
        if found is None:
            return super()._response(wire)
        self.asked.append((name, dns.rdatatype.to_text(question.rdtype)))
        zone, lbl = found
        z = self.zones[zone]
        response = dns.message.make_response(query)
        owner = question.name
        hops = 0
        while lbl in z.cname and hops < 40:  # a loop is served as a real server would chain it
            target = dns.name.from_text(f"{z.cname[lbl]}.{zone}")
            response.answer.append(dns.rrset.from_text(owner, 300, "IN", "CNAME", target.to_text()))
            owner, lbl, hops = target, z.cname[lbl], hops + 1
        if hops:
            return response
        a = z.listed.get(lbl, z.everything)
        if a is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text_list(owner, 300, "IN", "A", a))
        elif question.rdtype == dns.rdatatype.TXT:
            text = z.txt.get(lbl, f"listed: see https://example.net/lookup?{lbl}")
            chunks = [text[i : i + 255] for i in range(0, len(text), 255)]
            quoted = " ".join(f'"{c}"' for c in chunks)
            response.answer.append(dns.rrset.from_text(owner, 300, "IN", "TXT", quoted))
        return response

    def _delay(self, data: bytes) -> float:
        try:
            name = dns.message.from_wire(data).question[0].name.to_text(omit_final_dot=True)
        except Exception:
            return 0.0
        found = self._zone_of(name.lower())
        return self.slow.get(found[0], 0.0) if found else 0.0

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        delay = self._delay(data)
        if not delay:
            super().datagram_received(data, addr)
            return
        asyncio.get_running_loop().call_later(delay, super().datagram_received, data, addr)
