"""The receiver's test twins' TLS: what each listener offers a sender to see whether it refuses
(shared.arrivals `LISTENERS`). `tls_1_0`: STARTTLS with the operator's certificate and TLS 1.0
only (its old ciphers allowed); `bad_cert`: STARTTLS with a certificate made at start, self-signed,
expired a day before it was made and naming `BAD_NAME` only, so every check a verifying sender
makes fails. The plain twin offers none."""

import datetime
import os
import ssl
import tempfile
import warnings
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BAD_NAME: Final = "expired.invalid"


def tls_1_0(cert_file: str, key_file: str) -> ssl.SSLContext:
    """STARTTLS with the operator's certificate, TLS 1.0 and nothing newer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # the point of this listener: deprecated on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1
    return context


def bad_cert(now: datetime.datetime) -> ssl.SSLContext:
    """STARTTLS with a self-signed certificate for `BAD_NAME` that expired the day before `now`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BAD_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(BAD_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads files only: a private one, gone once read
    fd, path = tempfile.mkstemp(prefix="receiver-bad-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context
