"""Server TLS contexts that a well-configured server would not have."""

import ssl
import warnings

import trustme


def outdated(ca: trustme.CA, *, tls10: bool = False, ciphers: str | None = None) -> ssl.SSLContext:
    """A server stuck with TLS 1.0, or with `ciphers` (OpenSSL here still makes both)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(ctx)
    with warnings.catch_warnings():  # TLSVersion.TLSv1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        if tls10:
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
        else:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")
    return ctx
