"""schemathesis hooks (SCHEMATHESIS_HOOKS): the request rules JSON Schema cannot state, applied
to every generated case so the fuzzer's valid requests are valid.

- `tlsOptions.ca` is a PEM certificate and an OAuth2 login's `privateKey` a PEM RSA or EC key:
  a pattern cannot describe one that parses, so a generated string is replaced by a real one.
- A timeout is at most the interval (native `timeoutSeconds` ≤ `checkInterval`, AlertSite
  `timeout` seconds ≤ `interval` minutes), the stored interval when a PATCH sends none, the
  stored timeout when a PATCH sends an interval alone: a relation between two fields, or a
  field and the stored monitor, which a schema cannot state.
- An OAuth2 login's required fields depend on its grant and provider (the `oauth2`
  description): a generated one becomes a whole client-credentials grant of Microsoft's.
- A one-off maintenance window ends after it starts (a relation between two fields).
- A phone number is E.164 (the pattern says so) and valid in its country's plan, which only
  libphonenumber knows: one of that form becomes a real one.
- A round trip's spam folders are among its folders, and POP3 has neither (the inbox only).
- A round trip's `to` is in the receive login's domain, its `from` in the send login's (or in
  `to`'s without one): both become `to` (and the logins with an `@` too).
- A change of a notification channel names monitors and customers (`monitorIds`,
  `customerIds`) of the caller's organization, which only the stored state knows: well-formed
  generated ids become none, so a change of a just-created channel is not a 404 about a made-up
  customer (ids out of the schema's range stay, for the API to refuse).
- A channel's `url` ends in the mask `/********` only to keep the stored one as the channel
  shows it, which only the stored state knows: a generated one loses the mask.
- A monitor's `dependsOn` names monitors of the caller's organization by their public ids,
  which only the stored state knows: a well-formed id becomes a host name (`example.com`), so
  a create is not a 400 about a made-up monitor (entries of another form stay as generated).
Each rule is stated in the field's description in the document (openapi_doc._DESCRIPTIONS).
"""

import re
from datetime import timedelta
from typing import Any

import schemathesis
import trustme
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from shared.timefmt import parse_iso

E164 = r"\+[1-9][0-9]{6,14}"  # openapi_doc.E164 (this runs in schemathesis's own process)
PHONE = "+4915112345678"
CHANNELS = "/api/notification-channels/"
URL_MASK = "/********"  # shared.secret.SECRET_MASK after a URL's host
UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
MAX_CHOSEN = 1000  # channels.MAX_CHOSEN: a longer id list is invalid on purpose
FOLDER = r"(?=.*[^ ])[ !#-\[\]-~]{1,200}"  # openapi_doc's folder name
# openapi_doc's e-mail pattern, looser in its labels: it only tells which `to` is to be copied
EMAIL = r"[A-Za-z0-9_+-]{1,64}@(?:[A-Za-z0-9][A-Za-z0-9-]{0,62}\.)+[A-Za-z][A-Za-z0-9-]{0,62}"
PEM = trustme.CA().cert_pem.bytes().decode()
OAUTH2 = {
    "mechanism": "XOAUTH2",
    "grant": "client_credentials",
    "provider": "microsoft",
    "tenant": "contoso.onmicrosoft.com",
    "clientId": "00000000-0000-0000-0000-000000000001",
    "clientSecret": "fuzz-client-secret",
}
PRIVATE_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    .decode()
)
NATIVE_INTERVAL_MIN = 10  # validation.CHECK_INTERVAL_MIN: a PATCH may meet a stored one
TIMEOUT_DEFAULT = 30  # validation.TIMEOUT_DEFAULT, seconds: within every interval but 10 s
ALERTSITE_INTERVAL_DEFAULT = 1  # minutes; the least a stored AlertSite monitor can have


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    body = case.body
    if isinstance(body, dict):
        _real_values(body)
        _timeout_within_interval(body, case.method.upper() == "POST")
        _window_in_order(body)
        if case.method.upper() == "PATCH" and case.path.startswith(CHANNELS):
            _no_unknown_choices(body)
        if case.path.startswith(CHANNELS.rstrip("/")):
            _no_mask_in_url(body)
        _no_unknown_dependencies(body)
        phone = body.get("notificationPhoneNumber")
        if isinstance(phone, str) and re.fullmatch(E164, phone):
            body["notificationPhoneNumber"] = PHONE
        for config in (body.get("roundtripConfig"), body.get("config")):
            if isinstance(config, dict) and isinstance(config.get("receive"), dict):
                _mailbox_folders(config["receive"])
                _own_addresses(config)
    return case


def _no_mask_in_url(body: dict[str, Any]) -> None:
    url = body.get("url")
    if isinstance(url, str) and url.endswith(URL_MASK):
        body["url"] = url[: -len(URL_MASK)] + "/hook"


def _no_unknown_choices(body: dict[str, Any]) -> None:
    """Only lists of well-formed ids are emptied: a case made invalid on purpose (not a list, an
    item of another type or out of the schema's range, or more items than `maxItems`) stays
    invalid."""
    for field, well_formed in (("monitorIds", _is_uuid), ("customerIds", _is_customer_id)):
        value = body.get(field)
        if (
            isinstance(value, list)
            and len(value) <= MAX_CHOSEN
            and all(well_formed(v) for v in value)
        ):
            body[field] = []


def _no_unknown_dependencies(body: dict[str, Any]) -> None:
    depends = body.get("dependsOn")
    if isinstance(depends, list):
        body["dependsOn"] = ["example.com" if _is_uuid(v) else v for v in depends]


def _is_uuid(value: object) -> bool:
    """The document's `format: uuid` (RFC 4122's hyphenated form): a string of another form is
    invalid on purpose."""
    return isinstance(value, str) and re.fullmatch(UUID, value) is not None


def _is_customer_id(value: object) -> bool:
    """An integer in the schema's range; JSON Schema counts `4392.0` an integer, and so do the
    fuzzer and the API."""
    if type(value) is float and value.is_integer():
        value = int(value)
    return type(value) is int and 1 <= value <= 2**63 - 1


def _real_values(node: object) -> None:
    if isinstance(node, dict):
        ca = node.get("ca")
        if isinstance(ca, str) and ca and "\x00" not in ca:  # else invalid on purpose
            node["ca"] = PEM
        grant = node.get("oauth2")
        if isinstance(grant, dict):  # not a dict: invalid on purpose
            node["oauth2"] = dict(OAUTH2)
        key = node.get("privateKey")
        if isinstance(key, str) and key and "\x00" not in key:
            node["privateKey"] = PRIVATE_KEY
        for value in node.values():
            _real_values(value)


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value == int(value):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _timeout_within_interval(body: dict[str, Any], create: bool) -> None:
    """Only a timeout and an interval each within its bounds are touched: a case made invalid
    on purpose (the negative ones) stays invalid."""
    timeout, interval = _whole(body.get("timeoutSeconds")), _whole(body.get("checkInterval"))
    if not create and "timeoutSeconds" not in body and interval is not None and interval >= 10:
        # the stored timeout (up to 300 s) may be longer than the new interval: a 400 that
        # schemathesis, seeing the request only, called a schema-valid request refused
        body["timeoutSeconds"] = timeout = min(interval, TIMEOUT_DEFAULT)
    if timeout is not None and 1 <= timeout <= 300:
        if "checkInterval" not in body:
            interval = 60 if create else NATIVE_INTERVAL_MIN
        if interval is not None and 10 <= interval < timeout:
            body["timeoutSeconds"] = interval
    timeout, minutes = _whole(body.get("timeout")), _whole(body.get("interval"))
    if not create and "timeout" not in body and minutes is not None and minutes >= 1:
        # as above (seed 2 of `make fuzz`: a stored 205 s timeout, `"interval": "1"`)
        body["timeout"] = timeout = TIMEOUT_DEFAULT
    if timeout is not None and 1 <= timeout <= 300:
        if "interval" not in body:
            minutes = ALERTSITE_INTERVAL_DEFAULT
        if minutes is not None and minutes >= 1 and 60 * minutes < timeout:
            body["timeout"] = 60 * minutes


def _window_in_order(body: dict[str, Any]) -> None:
    starts, ends = body.get("startsAt"), body.get("endsAt")
    if not (isinstance(starts, str) and isinstance(ends, str)):
        return
    try:
        start, end = parse_iso(starts), parse_iso(ends)
    except ValueError:
        return  # not a time: a negative case
    if end <= start:
        try:
            body["endsAt"] = (start + timedelta(minutes=1)).isoformat()
        except OverflowError:  # the last minute of year 9999
            body["startsAt"] = (end - timedelta(minutes=1)).isoformat()


def _mailbox_folders(receive: dict[str, Any]) -> None:
    protocol = receive.get("protocol")
    if isinstance(protocol, str) and protocol.strip().lower() == "pop3":
        receive.pop("folders", None)
        receive.pop("spamFolders", None)
        return
    folders, spam = receive.get("folders", ["INBOX"]), receive.get("spamFolders")
    if isinstance(folders, list) and isinstance(spam, list):
        # a name the document refuses stays, to keep a negative case negative
        receive["spamFolders"] = [f for f in spam if f in folders or not _folder_name(f)]


def _own_addresses(config: dict[str, Any]) -> None:
    """A valid `to` becomes the receive login and the sender (a login with an `@` too); an
    invalid one stays, to keep a negative case negative."""
    to = config.get("to")
    if not (isinstance(to, str) and re.fullmatch(EMAIL, to)):
        return
    receive, send = config["receive"], config.get("send")
    if isinstance(receive.get("user"), str) and receive["user"]:
        receive["user"] = to
    if not isinstance(send, dict):
        return
    if isinstance(send.get("from"), str) and re.fullmatch(EMAIL, send["from"]):
        send["from"] = to
    auth = send.get("auth")
    if isinstance(auth, dict) and isinstance(auth.get("user"), str) and "@" in auth["user"]:
        auth["user"] = to


def _folder_name(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(FOLDER, value) is not None
