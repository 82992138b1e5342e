"""The OAuth2 SASL messages: XOAUTH2 (Google's and Microsoft's) and OAUTHBEARER (RFC 7628)."""

import base64
import binascii
import json


def oauth2_initial(mechanism: str, user: str, token: str) -> str:
    """The client's first message, base64: XOAUTH2's `user=U^Aauth=Bearer T^A^A`, or
    OAUTHBEARER's GS2 header with the user as authzid (RFC 7628 3.1; `=` and `,` escaped)."""
    if mechanism == "XOAUTH2":
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    else:
        authzid = user.replace("=", "=3D").replace(",", "=2C")
        raw = f"n,a={authzid},\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode()).decode("ascii")


def oauth2_dummy(mechanism: str) -> str:
    """What answers the server's error challenge, base64 (RFC 7628 3.2.3: a single %x01;
    XOAUTH2: an empty response)."""
    return "AQ==" if mechanism == "OAUTHBEARER" else ""


def describe_challenge(challenge: str) -> str:
    """What a server's error challenge says (`status 401, scope mail`), from its base64 JSON;
    the text as sent when it is not that. Not cut here: a server may echo a secret in it, which
    the caller masks whole before it cuts what it shows."""
    text = challenge.strip()
    try:
        decoded = json.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return f"challenge {text!r}" if text else ""
    if not isinstance(decoded, dict):
        return f"challenge {str(decoded)!r}"
    parts = [
        f"{name} {decoded[key]}"
        for key, name in (
            ("status", "status"),
            ("scope", "scope"),
            ("schemes", "schemes"),
            ("openid-configuration", "openid-configuration"),
        )
        if decoded.get(key)
    ]
    return ", ".join(parts)
