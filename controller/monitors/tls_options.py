"""A monitor's `tlsOptions` as the API accepts them: the checks on a CA and a server name.

Pure: values in, the normalised value out or `Invalid` naming the field (a 400 at the API).
The CA is shown to every role of the organization and travels in every job, so it must be
certificates and nothing else: a sequence of PEM `CERTIFICATE` blocks with only whitespace
around and between them, each a certificate `cryptography` parses. Any other PEM label (a key of
any kind, a request, a CRL, a PGP block), a label in another case, and any text before, between
or after the blocks is refused; what is stored is the certificates re-encoded as PEM. Messages
never quote the input. The CA is also loaded the way the agent will load it, so a CA the agent
could not use never reaches a job.
"""

import re
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from controller.monitors import validation
from controller.monitors.errors import invalid

# A CA bundle of a few certificates is a few kB; the cap keeps jobs (the CA travels in every
# one) and API responses small.
CA_MAX_BYTES = 32 * 1024

_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----[ \t]*\r?\n"
    r"(?P<body>[A-Za-z0-9+/=\s]+?)"
    r"-----END CERTIFICATE-----"
)
# Any armour line, whatever its case or label (PGP's included), to name what was given.
_ARMOUR = re.compile(r"-----\s*BEGIN\s+(?P<label>[A-Za-z0-9 ]{1,60}?)\s*-----", re.IGNORECASE)


def ca(value: str, field: str) -> str:
    """One or more PEM certificates (a CA, an intermediate or the server's own, pinned), as the
    normalised PEM to store."""
    if len(value.encode()) > CA_MAX_BYTES:
        raise invalid(field, f"{field} must be at most {CA_MAX_BYTES} bytes of PEM")
    armours = [(a.group(0), " ".join(a["label"].split())) for a in _ARMOUR.finditer(value)]
    blocks = list(_BLOCK.finditer(value))
    outside = _BLOCK.sub("", value)
    if any("PRIVATE" in label.upper() for _, label in armours) or "PRIVATE" in outside.upper():
        raise invalid(field, f"{field} holds a private key; give certificates only")
    for line, label in armours:
        if line != "-----BEGIN CERTIFICATE-----":
            raise invalid(
                field,
                f"{field} holds a PEM block labelled {label!r}; give only -----BEGIN"
                " CERTIFICATE----- blocks",
            )
    if not blocks:
        raise invalid(
            field, f"{field} must be PEM certificates (-----BEGIN CERTIFICATE----- blocks)"
        )
    if outside.strip():
        raise invalid(
            field,
            f"{field} has text outside its -----BEGIN CERTIFICATE----- blocks; only whitespace"
            " may stand before, between and after them",
        )
    pems: list[str] = []
    for n, block in enumerate(blocks, 1):
        try:
            cert = x509.load_pem_x509_certificate(block.group(0).encode())
        except ValueError:
            raise invalid(
                field, f"{field}: certificate {n} of {len(blocks)} is not a valid certificate"
            ) from None
        pems.append(cert.public_bytes(Encoding.PEM).decode())
    normalised = "".join(pems)
    try:
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=normalised)
    except ssl.SSLError:
        raise invalid(field, f"{field}: the certificates cannot be loaded as trusted CAs") from None
    return normalised


def servername(value: str, field: str) -> str:
    """The name for SNI and the certificate check: a hostname or IP, like `hostname`."""
    return validation.hostname(value, field)
