"""The facts a TLS result reports of a server's certificate, computed once per certificate.

A certificate says the same every time it is served, so parsing it, hashing its key and matching
a name against it is done on the first check that meets it; later checks find the facts by the
DER form itself (a dict's hash of ~1 KB costs a tenth of its SHA-256), or one larger than
KEY_DER_MAX by its SHA-256, so that a key never holds more than that. A server that changes its
certificate serves different bytes, so it gets new facts. The cache is a bounded LRU: a server
handing out a fresh certificate on every connection costs the CPU of the facts, never more
memory than the bound.
"""

import hashlib
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from shared.timefmt import iso_ms

SANS_MAX = 100  # a certificate may list thousands; the first hundred say enough
SAN_MAX = 255  # characters of each (a DNS name is at most 253)
NAME_TEXT_MAX = 1024  # characters of a subject and of an issuer (RFC 4514)
# Certificates whose facts are kept (a few KB each, the parsed certificate included): past it
# the least recently met one is parsed again when met.
CERTS_MAX = 2048
# Names matched per certificate and kept (a wildcard certificate may serve many monitors).
NAMES_MAX = 64
# The largest DER form that is its own key in the cache (a leaf is 0.5-3 KB).
KEY_DER_MAX = 4096


@dataclass(slots=True)
class CertFacts:
    sha256: str  # lowercase hex of the SHA-256 of the DER form
    subject: str  # the common name, else the whole subject (RFC 4514)
    not_after: datetime
    not_after_iso: str
    issuer: str  # RFC 4514
    sans: tuple[str, ...]  # DNS names, then IP addresses, at most SANS_MAX
    key_type: str | None
    key_bits: int | None
    spki_sha256: str | None
    signature: str
    cert: x509.Certificate
    names: dict[str, bool] = field(default_factory=dict)  # hostname -> the certificate names it

    def names_host(self, hostname: str) -> bool:
        """Whether the certificate names `hostname` (RFC 6125); answers are kept per name."""
        found = self.names.get(hostname)
        if found is None:
            found = name_matches(self.cert, hostname)
            if len(self.names) < NAMES_MAX:
                self.names[hostname] = found
        return found


class CertCache:
    """CertFacts by the certificate's DER form (a larger one: by the hex SHA-256 of it, a
    `str`, so never equal to a DER key), the `maxsize` last met."""

    def __init__(self, maxsize: int = CERTS_MAX) -> None:
        self.maxsize = maxsize
        self._facts: OrderedDict[bytes | str, CertFacts] = OrderedDict()

    def facts(self, der: bytes) -> CertFacts:
        """The facts of the certificate `der`; raises what parsing it raises (ValueError)."""
        key = der if len(der) <= KEY_DER_MAX else hashlib.sha256(der).hexdigest()
        found = self._facts.get(key)
        if found is not None:
            self._facts.move_to_end(key)
            return found
        found = cert_facts(der, key if isinstance(key, str) else None)
        self._facts[key] = found
        if len(self._facts) > self.maxsize:
            self._facts.popitem(last=False)
        return found

    def __len__(self) -> int:
        return len(self._facts)


def cert_facts(der: bytes, sha256: str | None = None) -> CertFacts:
    """The facts of the certificate `der`, computed (no cache)."""
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = names[0].value if names else cert.subject.rfc4514_string()
    not_after = cert.not_valid_after_utc
    key_type = key_bits = spki_sha256 = None
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError):  # a key type cryptography lacks
        pass
    else:
        key_type, key_bits = _key(key)
        spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        spki_sha256 = hashlib.sha256(spki).hexdigest()
    oid = cert.signature_algorithm_oid
    return CertFacts(
        sha256=sha256 or hashlib.sha256(der).hexdigest(),
        subject=(subject if isinstance(subject, str) else subject.decode())[:NAME_TEXT_MAX],
        not_after=not_after,
        not_after_iso=iso_ms(not_after),
        issuer=cert.issuer.rfc4514_string()[:NAME_TEXT_MAX],
        sans=_sans(cert),
        key_type=key_type,
        key_bits=key_bits,
        spki_sha256=spki_sha256,
        signature=getattr(oid, "_name", None) or oid.dotted_string,
        cert=cert,
    )


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):  # ValueError: an extension that does not parse
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(name[:SAN_MAX] for name in [*dns, *ips][:SANS_MAX])


def _key(key: object) -> tuple[str | None, int | None]:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return None, None


def name_matches(cert: x509.Certificate, hostname: str) -> bool:
    """Whether `cert` names `hostname` (an IP address: as an IP SAN), as RFC 6125 says."""
    # Imported on first use: it adds ~40 ms to the agent's start, which only checks without
    # verification ever need.
    import service_identity
    from service_identity.cryptography import (
        verify_certificate_hostname,
        verify_certificate_ip_address,
    )

    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        is_ip = False
    else:
        is_ip = True
    try:
        if is_ip:
            verify_certificate_ip_address(cert, hostname)
        else:
            verify_certificate_hostname(cert, hostname)
    except (service_identity.VerificationError, service_identity.CertificateError):
        return False
    return True
