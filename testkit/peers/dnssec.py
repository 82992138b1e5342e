"""A DNSSEC-signed zone (dnspython's `dns.dnssec`: a KSK and a ZSK, RRSIGs, NSEC) and a loopback
authoritative server for it: what a validating resolver (testkit/peers/unbound.py) is pointed at,
so the AD bit the agent sees comes from real validation rather than from a peer that sets it.

`bogus` names the (name, type) RRsets whose signature is broken after signing: a validating
resolver answers them SERVFAIL.
"""

import datetime

import dns.dnssec
import dns.dnssectypes
import dns.flags
import dns.message
import dns.name
import dns.node
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.RRSIG
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

from testkit.peers.dns import DnsPeer, Records

TTL = 300
ALGORITHM = dns.dnssectypes.Algorithm.ECDSAP256SHA256


def signed_zone(
    origin: str, records: Records, bogus: frozenset[tuple[str, str]] = frozenset()
) -> tuple[dns.zone.Zone, str]:
    """The zone `origin` with `records` (besides its own SOA and NS), signed with a fresh KSK
    and ZSK and NSEC-chained; and its trust anchor (the KSK, in unbound's `trust-anchor:`
    form)."""
    apex = dns.name.from_text(origin)
    zone = dns.zone.Zone(apex, relativize=False)
    ksk_key = ec.generate_private_key(ec.SECP256R1())
    zsk_key = ec.generate_private_key(ec.SECP256R1())
    ksk = dns.dnssec.make_dnskey(ksk_key.public_key(), ALGORITHM, flags=257)
    zsk = dns.dnssec.make_dnskey(zsk_key.public_key(), ALGORITHM)
    with zone.writer() as txn:
        txn.add(apex, TTL, _rdata("SOA", f"ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300"))
        txn.add(apex, TTL, _rdata("NS", f"ns.{origin}."))
        txn.add(dns.name.from_text(f"ns.{origin}"), TTL, _rdata("A", "127.0.0.1"))
        for (name, rdtype), texts in records.items():
            for text in texts:
                txn.add(dns.name.from_text(name), TTL, _rdata(rdtype, text))
        # Valid from an hour ago: the resolver's clock and ours are the same clock here.
        now = datetime.datetime.now(datetime.UTC)
        dns.dnssec.sign_zone(
            zone,
            txn,
            keys=[(ksk_key, ksk), (zsk_key, zsk)],
            inception=now - datetime.timedelta(hours=1),
            expiration=now + datetime.timedelta(days=1),
        )
        for name, rdtype in bogus:
            owner = dns.name.from_text(name)
            covers = dns.rdatatype.from_text(rdtype)
            signatures = txn.get(owner, dns.rdatatype.RRSIG, covers)
            assert signatures, f"no signature of {name} {rdtype} to break"
            broken = [
                sig.replace(signature=bytes([sig.signature[0] ^ 0xFF]) + sig.signature[1:])
                for sig in signatures
            ]
            txn.replace(owner, dns.rdataset.from_rdata_list(signatures.ttl, broken))
    return zone, f"{origin}. DNSKEY {ksk.to_text()}"


def _rdata(rdtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


class SignedDnsPeer(DnsPeer):
    """Answers authoritatively from a signed zone, with RRSIGs and NSEC proofs when the query
    asks for DNSSEC (the DO bit), as an authoritative server of a signed zone does."""

    def __init__(self, zone: dns.zone.Zone) -> None:
        super().__init__({})
        self.zone = zone
        self._names = sorted(zone.nodes)  # canonical DNSSEC order (RFC 4034 6.1)

    def answer(self, wire: bytes, tcp: bool = False) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        qname = query.question[0].name
        qtype = query.question[0].rdtype
        self.asked.append((qname.to_text(omit_final_dot=True), dns.rdatatype.to_text(qtype)))
        origin = self.zone.origin
        assert origin is not None
        if not qname.is_subdomain(origin):
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        response.flags |= dns.flags.AA
        dnssec = bool(query.ednsflags & dns.flags.DO)
        node = self.zone.get_node(qname)
        found = node.get_rdataset(dns.rdataclass.IN, qtype) if node is not None else None
        if node is not None and found is not None:
            self._add(response.answer, qname, node, qtype, dnssec)
            return response.to_wire()
        apex = self.zone.find_node(origin)
        self._add(response.authority, origin, apex, dns.rdatatype.SOA, dnssec)
        if node is not None:  # the name exists without this type: its own NSEC says so
            self._add(response.authority, qname, node, dns.rdatatype.NSEC, dnssec)
            return response.to_wire()
        self._cover(response, qname, dnssec)
        if not any(n.is_subdomain(qname) for n in self._names):  # not an empty non-terminal
            response.set_rcode(dns.rcode.NXDOMAIN)
            encloser = qname.parent()  # the closest name that exists, empty or not
            while not any(n.is_subdomain(encloser) for n in self._names):
                encloser = encloser.parent()
            self._cover(response, dns.name.from_text("*", encloser), dnssec)
        return response.to_wire()

    def _cover(self, response: dns.message.Message, name: dns.name.Name, dnssec: bool) -> None:
        """The NSEC of the last name before `name` (its next name is after it)."""
        before = max(n for n in self._names if n < name)
        nsec = (before, dns.rdatatype.NSEC)
        if not any((rrset.name, rrset.rdtype) == nsec for rrset in response.authority):
            self._add(
                response.authority, before, self.zone.nodes[before], dns.rdatatype.NSEC, dnssec
            )

    @staticmethod
    def _add(
        section: list[dns.rrset.RRset],
        owner: dns.name.Name,
        node: dns.node.Node,
        rdtype: dns.rdatatype.RdataType,
        dnssec: bool,
    ) -> None:
        rdataset = node.find_rdataset(dns.rdataclass.IN, rdtype)
        section.append(dns.rrset.from_rdata_list(owner, rdataset.ttl, list(rdataset)))
        if dnssec:
            sigs = node.find_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
            section.append(dns.rrset.from_rdata_list(owner, sigs.ttl, list(sigs)))
