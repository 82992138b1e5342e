"""Server TLS contexts that a well-configured server would not have."""

import ssl
import tempfile
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def outdated(
    ca: trustme.CA,
    *,
    tls10: bool = False,
    ciphers: str | None = None,
    names: tuple[str, ...] = ("localhost",),
) -> ssl.SSLContext:
    """A server stuck with TLS 1.0, or with `ciphers` (OpenSSL here still makes both), its
    certificate for `names`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(ctx)
    with warnings.catch_warnings():  # TLSVersion.TLSv1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        if tls10:
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
        else:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")
    return ctx


def short_key_leaf(ca: trustme.CA, rsa_bits: int) -> ssl.SSLContext:
    """A server certificate for localhost from `ca` with a short RSA key. (A SHA-1 signature
    cannot be made here: cryptography refuses to sign with SHA-1.)"""
    key = rsa.generate_private_key(65537, rsa_bits)
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # a server that lets itself use such a key
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "server.pem"
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem + cert.public_bytes(serialization.Encoding.PEM))
        ctx.load_cert_chain(path)
    return ctx
