"""TLS for probers: contexts built once per process, and the facts a result reports.

Building an SSLContext loads the system trust store (~36 ms of CPU), so the agent builds the two
variants once at start and every check reuses them; a context is safe to share across tasks.
A monitor that names its own CA (`tlsOptions.ca`) gets a context built once per distinct CA.
"""

import functools
import math
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from agent.probers.base import ProbeFailure
from agent.probers.certs import CertCache
from shared.messages import TlsInfo, TlsOptions


class TimedSSLObject(ssl.SSLObject):
    """Notes when its handshake finished, so a library that hides the handshake inside a
    larger call (aiosmtplib's implicit-TLS connect also reads the greeting) can still be timed."""

    handshake_done_at: float | None = None

    def do_handshake(self) -> None:
        super().do_handshake()
        self.handshake_done_at = time.perf_counter()


@dataclass(frozen=True, slots=True)
class SslContexts:
    verified: ssl.SSLContext
    unverified: ssl.SSLContext
    # Only for a second look at a server whose handshake failed on its protocol version or
    # ciphers (never for a check itself, never with credentials): it also speaks TLS 1.0 and 1.1
    # and weak ciphers, so the result can say which ones the server is stuck with.
    legacy: ssl.SSLContext
    # The same, verifying the chain (not the name): tried first, so the result can say whether
    # a trusted chain vouches for the certificate of a server stuck with old TLS.
    legacy_verified: ssl.SSLContext

    def for_options(self, options: TlsOptions) -> ssl.SSLContext:
        """The context a monitor's `tlsOptions` ask for; a CA is ignored when nothing is
        verified (node does the same)."""
        if not options.reject_unauthorized:
            return self.unverified
        return self.verified if options.ca is None else ca_context(options.ca)


# Bounds the memory a controller sending many distinct CAs could make an agent hold; past it
# the least recently used context is built again when needed.
CA_CONTEXTS_MAX = 256


@functools.lru_cache(maxsize=CA_CONTEXTS_MAX)
def ca_context(cadata: str) -> ssl.SSLContext:
    """A verifying context that trusts the certificates in `cadata` and nothing else, as node's
    `ca` does. Partial chains are allowed so that a pinned intermediate or server certificate
    is a trust anchor on its own. Raises ProbeFailure("tls") when `cadata` holds none."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=cadata)
    except (ssl.SSLError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, ssl.SSLError) else None
        raise ProbeFailure(
            "tls", f"tlsOptions.ca holds no usable PEM certificate: {reason or exc}"
        ) from None
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.sslobject_class = TimedSSLObject
    return ctx


@functools.lru_cache(maxsize=4)
def build_ssl_contexts(cadata: str | None = None) -> SslContexts:
    """The system trust store, plus `cadata` (PEM) when given: tests add their own CA. Built
    once per `cadata` in a process (the store's parsing is ~30 ms of CPU); only read after."""
    verified = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cadata is not None:
        verified.load_verify_locations(cadata=cadata)
    unverified = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no trust store: it verifies nothing
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy_verified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy_verified.check_hostname = False
    legacy_verified.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cadata is not None:
        legacy_verified.load_verify_locations(cadata=cadata)
    for ctx in (legacy, legacy_verified):
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    for ctx in (verified, unverified, legacy, legacy_verified):
        ctx.sslobject_class = TimedSSLObject
    return SslContexts(
        verified=verified, unverified=unverified, legacy=legacy, legacy_verified=legacy_verified
    )


def handshake_done_at(obj: object) -> float | None:
    return obj.handshake_done_at if isinstance(obj, TimedSSLObject) else None


TlsMode = Literal["implicit", "starttls"]


def tls_info(obj: ssl.SSLObject | ssl.SSLSocket, mode: TlsMode, now: datetime) -> TlsInfo:
    """Version, cipher and certificate facts of an established TLS session, reached by `mode`;
    the certificate's days left counted from `now`.

    The certificate is read in its DER form: with verification off, `getpeercert()` returns an
    empty dict, but the binary form is always there; its facts come from CERTS, computed once
    per certificate. A session the context verified (chain and name) says so; without
    verification the name is matched here (RFC 6125, by service-identity) and the chain stays
    unknown.
    """
    cipher = obj.cipher()
    info = TlsInfo(version=obj.version(), cipher=cipher[0] if cipher else None, mode=mode)
    der = obj.getpeercert(binary_form=True)
    if der:
        facts = CERTS.facts(der)
        info.cert_subject = facts.subject
        info.cert_not_after = facts.not_after_iso
        info.cert_days_left = math.floor((facts.not_after - now).total_seconds() / 86400)
        info.cert_sha256 = facts.sha256
        info.cert_issuer = facts.issuer
        info.cert_sans = list(facts.sans)
        info.cert_key_type, info.cert_key_bits = facts.key_type, facts.key_bits
        info.cert_spki_sha256 = facts.spki_sha256
        info.cert_signature = facts.signature
        ctx = obj.context
        if ctx.verify_mode == ssl.CERT_REQUIRED:
            info.chain_verified = True
        if ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname:
            info.name_matched = True
        elif obj.server_hostname:
            info.name_matched = facts.names_host(obj.server_hostname)
    return info


# The facts of the certificates this process met, shared by every check.
CERTS = CertCache()


def describe_ssl_error(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message or exc.reason}"
    return f"TLS failed: {exc.reason or exc}"
