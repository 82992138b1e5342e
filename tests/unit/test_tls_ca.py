"""`tlsOptions.ca` (pure): only PEM CERTIFICATE blocks with whitespace around and between them
are accepted, stored as the certificates re-encoded; every other input, a key in any form
above all, is refused with its exact message, which never quotes the input."""

import base64
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from controller.monitors.errors import Invalid
from controller.monitors.tls_options import CA_MAX_BYTES, ca
from controller.web.api.errors import api_error

F = "smtpConfig.tlsOptions.ca"
_CA = trustme.CA()
CERT = _CA.cert_pem.bytes().decode()
OTHER = trustme.CA().cert_pem.bytes().decode()
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP256R1())
_ED = ed25519.Ed25519PrivateKey.generate()
PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER
PKCS8, TRADITIONAL = (
    serialization.PrivateFormat.PKCS8,
    serialization.PrivateFormat.TraditionalOpenSSL,
)
NONE = serialization.NoEncryption()


def _key(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat
) -> str:
    return key.private_bytes(PEM, fmt, NONE).decode()


PKCS8_PEM = _key(_RSA, PKCS8)
PKCS8_DER_B64 = base64.encodebytes(_RSA.private_bytes(DER, PKCS8, NONE)).decode()
CSR = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.com")]))
    .sign(_EC, hashes.SHA256())
    .public_bytes(PEM)
    .decode()
)
CRL = (
    x509.CertificateRevocationListBuilder()
    .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
    .last_update(datetime.now(UTC))
    .next_update(datetime.now(UTC) + timedelta(days=1))
    .sign(_EC, hashes.SHA256())
    .public_bytes(PEM)
    .decode()
)
PUBLIC = _RSA.public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
PGP_PUBLIC = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGV0ZXN0AQgA\n=abcd\n"
    "-----END PGP PUBLIC KEY BLOCK-----\n"
)
PGP_PRIVATE = PGP_PUBLIC.replace("PUBLIC", "PRIVATE")
KEY_AS_CERT = "-----BEGIN CERTIFICATE-----\n" + PKCS8_DER_B64 + "-----END CERTIFICATE-----\n"
BROKEN = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"

KEY = f"{F} holds a private key; give certificates only"
OUTSIDE = (
    f"{F} has text outside its -----BEGIN CERTIFICATE----- blocks; only whitespace may stand"
    " before, between and after them"
)
NO_PEM = f"{F} must be PEM certificates (-----BEGIN CERTIFICATE----- blocks)"


def labelled(label: str) -> str:
    return f"{F} holds a PEM block labelled {label!r}; give only -----BEGIN CERTIFICATE----- blocks"


# (what it is, the input, the exact message)
INVALID: list[tuple[str, str, str]] = [
    ("pkcs8 key after the cert", CERT + PKCS8_PEM, KEY),
    ("pkcs8 key alone", PKCS8_PEM, KEY),
    ("rsa key (traditional)", CERT + _key(_RSA, TRADITIONAL), KEY),
    ("ec key (traditional)", CERT + _key(_EC, TRADITIONAL), KEY),
    (
        "encrypted pkcs8 key",
        CERT
        + _RSA.private_bytes(PEM, PKCS8, serialization.BestAvailableEncryption(b"pass")).decode(),
        KEY,
    ),
    (
        "openssh key",
        CERT + _ED.private_bytes(PEM, serialization.PrivateFormat.OpenSSH, NONE).decode(),
        KEY,
    ),
    ("lower-case key label", CERT + PKCS8_PEM.lower(), KEY),
    ("key label without dashes enough", CERT + PKCS8_PEM.replace("-----", "----"), KEY),
    ("pgp private key", CERT + PGP_PRIVATE, KEY),
    ("the word in free text", CERT + "my private key is below\n", KEY),
    ("base64 key after the cert, no armour", CERT + PKCS8_DER_B64, OUTSIDE),
    (
        "key DER in certificate armour",
        KEY_AS_CERT,
        f"{F}: certificate 1 of 1 is not a valid certificate",
    ),
    (
        "key DER as the second certificate",
        CERT + KEY_AS_CERT,
        f"{F}: certificate 2 of 2 is not a valid certificate",
    ),
    ("not base64", BROKEN, f"{F}: certificate 1 of 1 is not a valid certificate"),
    ("public key", CERT + PUBLIC.decode(), labelled("PUBLIC KEY")),
    ("certificate request", CSR, labelled("CERTIFICATE REQUEST")),
    ("crl after the cert", CERT + CRL, labelled("X509 CRL")),
    (
        "trusted certificate label",
        CERT.replace(" CERTIFICATE", " TRUSTED CERTIFICATE"),
        labelled("TRUSTED CERTIFICATE"),
    ),
    ("lower-case certificate label", CERT.lower(), labelled("certificate")),
    ("pgp public key", CERT + PGP_PUBLIC, labelled("PGP PUBLIC KEY BLOCK")),
    ("free text", "x", NO_PEM),
    ("empty-ish", " \n ", NO_PEM),
    ("text after", CERT + "see https://example.com\n", OUTSIDE),
    ("text before", "Certificate:\n    Data:\n" + CERT, OUTSIDE),
    ("comment between", CERT + "# Issuer: CN=other\n" + OTHER, OUTSIDE),
    ("no END line", CERT.replace("-----END CERTIFICATE-----\n", ""), NO_PEM),
    ("second without END", CERT + OTHER.replace("-----END CERTIFICATE-----\n", ""), OUTSIDE),
    (
        "too big",
        CERT * (CA_MAX_BYTES // len(CERT) + 1),
        f"{F} must be at most {CA_MAX_BYTES} bytes of PEM",
    ),
]


@pytest.mark.parametrize(
    ("value", "message"), [(v, m) for _, v, m in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_anything_but_certificates_is_refused_with_its_message(value: str, message: str) -> None:
    with pytest.raises(Invalid) as refused:
        ca(value, F)
    answer = api_error(refused.value)  # as the API says it
    assert (answer.status, answer.fields, answer.message) == (
        400,
        [F],
        message,
    )


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (CERT, CERT),
        (CERT + OTHER, CERT + OTHER),
        (CERT.replace("\n", "\r\n"), CERT),
        ("\n\n  " + CERT.replace("\n", "\n    ") + "\n\t" + OTHER + "\n\n", CERT + OTHER),
        (CERT.rstrip("\n") + OTHER, CERT + OTHER),
    ],
    ids=["one", "two", "crlf", "indented, blank lines", "no newline between"],
)
def test_certificates_are_stored_re_encoded(value: str, stored: str) -> None:
    assert ca(value, F) == stored
