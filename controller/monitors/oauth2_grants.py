"""OAuth2 grants of a monitor's logins: what is stored, where its token endpoint is, which scopes
it asks for, and which endpoints are allowed. Pure: no I/O.

A login (SMTP `auth`, the IMAP/POP config, a round trip's `send.auth` and `receive`) may hold
an `oauth2` object beside its user: the controller fetches access tokens with it and puts only
the access token into the job. Its long-lived secrets (`clientSecret`, `refreshToken`,
`privateKey`) are stored sealed (controller.secrets.box) and never shown.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import idna
import msgspec
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from controller.secrets.box import stored_hook
from shared.secret import NO_SECRET, Secret, wrap

Mechanism = Literal["XOAUTH2", "OAUTHBEARER"]
GrantType = Literal["client_credentials", "refresh_token", "jwt_bearer"]
Provider = Literal["microsoft", "google", "custom"]

MECHANISMS: Final = ("XOAUTH2", "OAUTHBEARER")
GRANTS: Final = ("client_credentials", "refresh_token", "jwt_bearer")
PROVIDERS: Final = ("microsoft", "google", "custom")
SECRET_KEYS: Final = ("clientSecret", "refreshToken", "privateKey")
# RFC 7523's grant type, as Google's token endpoint takes it.
JWT_BEARER_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"

MICROSOFT_TOKEN_URL: Final = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
GOOGLE_TOKEN_URL: Final = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE: Final = "https://mail.google.com/"
# App-only (client credentials): the Exchange Online resource's application permissions
# (IMAP.AccessAsApp, POP.AccessAsApp, SMTP.SendAsApp) as granted to the app.
MICROSOFT_APP_SCOPE: Final = "https://outlook.office365.com/.default"
# Delegated (a user's refresh token): per protocol, plus offline_access for the refresh token.
MICROSOFT_DELEGATED: Final[Mapping[str, str]] = {
    "smtp": "https://outlook.office.com/SMTP.Send",
    "imap": "https://outlook.office.com/IMAP.AccessAsUser.All",
    "pop3": "https://outlook.office.com/POP.AccessAsUser.All",
}

# A tenant: a GUID, a verified domain, or `organizations` / `common` / `consumers`.
_TENANT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
_CLIENT_ID_MAX = 256
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,512}$")  # RFC 6749 3.3 scope-token
SCOPES_MAX = 16
SECRET_MAX = 16_384  # a PEM private key fits with room to spare
SUBJECT_MAX = 254


class Grant(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A login's OAuth2 grant as stored (its secrets sealed) or opened for a fetch."""

    mechanism: str = "XOAUTH2"
    grant: str = "client_credentials"
    provider: str = "custom"
    tenant: str = ""
    token_url: str = ""
    client_id: str = ""
    scopes: list[str] = msgspec.field(default_factory=list)
    subject: str = ""  # jwt_bearer: the mailbox the service account acts as ("" = the user)
    client_secret: Secret = NO_SECRET
    refresh_token: Secret = NO_SECRET
    private_key: Secret = NO_SECRET

    def __post_init__(self) -> None:
        self.client_secret = wrap(self.client_secret)
        self.refresh_token = wrap(self.refresh_token)
        self.private_key = wrap(self.private_key)


def stored(value: object) -> Grant | None:
    """A login's stored `oauth2` object as a Grant (secrets as `SealedSecret`); None for none
    or for one that does not fit (the login then has no grant)."""
    if not isinstance(value, Mapping):
        return None
    try:
        return msgspec.convert(value, Grant, dec_hook=stored_hook)
    except msgspec.ValidationError:
        return None


def endpoint(grant: Grant) -> str:
    """The grant's token endpoint URL."""
    if grant.provider == "microsoft":
        return MICROSOFT_TOKEN_URL.format(tenant=grant.tenant)
    if grant.provider == "google":
        return GOOGLE_TOKEN_URL
    return grant.token_url


def scopes(grant: Grant, protocol: str) -> list[str]:
    """The scopes the grant asks for: its own, else its preset's for the protocol
    (`smtp`, `imap`, `pop3`)."""
    if grant.scopes:
        return list(grant.scopes)
    if grant.provider == "google":
        return [GOOGLE_SCOPE]
    if grant.provider == "microsoft":
        if grant.grant == "client_credentials":
            return [MICROSOFT_APP_SCOPE]
        return [MICROSOFT_DELEGATED.get(protocol, MICROSOFT_DELEGATED["imap"]), "offline_access"]
    return []


class GrantProblem(ValueError):
    """A grant the API refuses: `field` is the key at fault, relative to the `oauth2` object."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def token_host(url: str, allowed_hosts: Sequence[str] | None) -> str:
    """The host of a custom token endpoint URL; GrantProblem (`tokenUrl`) unless it is https,
    with no user info, query or fragment, on a host of `allowed_hosts` (OAUTH2_TOKEN_HOSTS;
    None: not known here, the API that stores it decides)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        raise GrantProblem("tokenUrl", "tokenUrl is not a URL") from None
    if parts.scheme != "https":
        raise GrantProblem("tokenUrl", "tokenUrl must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise GrantProblem("tokenUrl", "tokenUrl must carry no user name or password")
    if parts.query or parts.fragment:
        raise GrantProblem("tokenUrl", "tokenUrl must carry no query or fragment")
    host = normal_host(parts.hostname or "")
    if not host:
        raise GrantProblem("tokenUrl", "tokenUrl names no host")
    if allowed_hosts is not None and host not in {normal_host(h) for h in allowed_hosts}:
        raise GrantProblem(
            "tokenUrl",
            f"tokenUrl: {host} is not a token endpoint host this controller allows"
            " (OAUTH2_TOKEN_HOSTS); use provider microsoft or google, or ask the operator",
        )
    return host


def normal_host(host: str) -> str:
    """A host name as compared: lower case, punycode, no trailing dot."""
    host = host.strip().rstrip(".").lower()
    try:
        return idna.encode(host, uts46=True).decode() if host and not host.isascii() else host
    except idna.IDNAError:
        return ""


def checked(raw: Mapping[str, object], allowed_hosts: Sequence[str] | None) -> Grant:
    """A grant as the API received it (secrets in clear, or already sealed, or the mask
    resolved by the caller), checked; GrantProblem naming the key at fault."""
    mechanism = raw.get("mechanism") or "XOAUTH2"
    if mechanism not in MECHANISMS:
        raise GrantProblem("mechanism", "mechanism must be XOAUTH2 or OAUTHBEARER")
    kind = raw.get("grant")
    if kind not in GRANTS:
        raise GrantProblem("grant", f"grant must be one of {', '.join(GRANTS)}")
    provider = raw.get("provider") or "custom"
    if provider not in PROVIDERS:
        raise GrantProblem("provider", f"provider must be one of {', '.join(PROVIDERS)}")
    tenant, token_url = str(raw.get("tenant") or ""), str(raw.get("tokenUrl") or "")
    if provider == "microsoft":
        if not _TENANT.match(tenant) or ".." in tenant:
            raise GrantProblem(
                "tenant", "tenant (the Entra ID tenant's id or domain) is required for microsoft"
            )
    elif tenant:
        raise GrantProblem("tenant", "tenant is microsoft's only")
    if provider == "custom":
        if not token_url:
            raise GrantProblem("tokenUrl", "tokenUrl is required without a provider preset")
        token_host(token_url, allowed_hosts)
    elif token_url:
        raise GrantProblem("tokenUrl", f"tokenUrl is set by the {provider} preset")
    if provider == "google" and kind == "client_credentials":
        raise GrantProblem(
            "grant",
            "google takes refresh_token or jwt_bearer (a service account), not client_credentials",
        )
    if provider == "microsoft" and kind == "jwt_bearer":
        raise GrantProblem("grant", "microsoft takes client_credentials or refresh_token")
    client_id = str(raw.get("clientId") or "")
    if not client_id or len(client_id) > _CLIENT_ID_MAX or not client_id.isprintable():
        raise GrantProblem("clientId", f"clientId is required (1-{_CLIENT_ID_MAX} characters)")
    scopes_in = raw.get("scopes") or []
    if not isinstance(scopes_in, list) or len(scopes_in) > SCOPES_MAX:
        raise GrantProblem("scopes", f"scopes must list at most {SCOPES_MAX} scopes")
    for scope in scopes_in:
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise GrantProblem("scopes", f"scopes: {scope!r} is not an OAuth2 scope")
    if provider == "custom" and not scopes_in:
        raise GrantProblem("scopes", "scopes are required without a provider preset")
    subject = str(raw.get("subject") or "")
    if subject and (kind != "jwt_bearer" or len(subject) > SUBJECT_MAX or "@" not in subject):
        raise GrantProblem(
            "subject", "subject (the mailbox a service account acts as) is jwt_bearer's only"
        )
    grant = Grant(
        mechanism=mechanism,
        grant=kind,
        provider=provider,
        tenant=tenant,
        token_url=token_url,
        client_id=client_id,
        scopes=list(dict.fromkeys(scopes_in)),
        subject=subject,
    )
    for key, attr in zip(
        SECRET_KEYS, ("client_secret", "refresh_token", "private_key"), strict=True
    ):
        value = raw.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > SECRET_MAX:
            raise GrantProblem(key, f"{key} must be text of at most {SECRET_MAX} characters")
        setattr(grant, attr, Secret(value))
    needed = {
        "client_credentials": "clientSecret",
        "refresh_token": "refreshToken",
        "jwt_bearer": "privateKey",
    }[kind]
    if not raw.get(needed):
        raise GrantProblem(needed, f"{needed} is required for the {kind} grant")
    return grant


def as_stored(grant: Grant) -> dict[str, Any]:
    """The grant as the config JSON stores it (its secrets as they are: the caller sealed
    them), and so as responses show it. `mechanism`, `grant` and `provider` are always spelt
    out, so a grant shown is one the API takes back as it is (`checked` requires `grant`);
    msgspec's `omit_defaults` tells a default by identity, not by value."""
    out: dict[str, Any] = msgspec.to_builtins(
        grant, enc_hook=lambda s: s.reveal() if isinstance(s, Secret) else s
    )
    return {
        "mechanism": grant.mechanism,
        "grant": grant.grant,
        "provider": grant.provider,
        **out,
    }


def private_key(pem: str) -> RSAKey | ECKey:
    """The signing key of a PEM private key (a service account's `private_key`); GrantProblem
    (`privateKey`) for anything else, a public key included."""
    for kind in (RSAKey, ECKey):
        try:
            key = kind.import_key(pem)
        except (JoseError, ValueError, TypeError):
            continue
        if key.is_private:
            return key
    raise GrantProblem("privateKey", "privateKey must be a PEM RSA or EC private key")
