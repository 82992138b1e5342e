"""A monitor's `tlsOptions` as the API accepts them: the checks on a CA and a server name.

Pure: values in, the normalised value out or a 400 naming the field. The CA is parsed here the
way the agent will load it, so a CA the agent could not use never reaches a job.
"""

import ssl

from cryptography import x509

from controller.api import validation
from controller.api.errors import bad_request

# A CA bundle of a few certificates is a few kB; the cap keeps jobs (the CA travels in every
# one) and API responses small.
CA_MAX_BYTES = 32 * 1024


def ca(value: str, field: str) -> str:
    """One or more PEM certificates (a CA, an intermediate or the server's own, pinned)."""
    if len(value.encode()) > CA_MAX_BYTES:
        raise bad_request(field, f"{field} must be at most {CA_MAX_BYTES} bytes of PEM")
    if "PRIVATE KEY-----" in value:
        # Stored config is shown in responses: a key pasted by mistake would be published.
        raise bad_request(field, f"{field} holds a private key; give certificates only")
    try:
        x509.load_pem_x509_certificates(value.encode())
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=value)
    except (ValueError, ssl.SSLError) as exc:
        raise bad_request(
            field, f"{field} must be PEM certificates (-----BEGIN CERTIFICATE-----): {exc}"
        ) from None
    return value


def servername(value: str, field: str) -> str:
    """The name for SNI and the certificate check: a hostname or IP, like `hostname`."""
    return validation.hostname(value, field)
