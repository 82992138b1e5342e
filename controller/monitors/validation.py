"""Field rules of the monitor API: hostnames, country codes, contact details, bounds.

Each function returns the normalised value or raises `Invalid` naming the field (a 400 at the API).
"""

import ipaddress
import re
import unicodedata
import uuid

import idna
import msgspec
import phonenumbers
import pycountry

from controller.monitors.errors import Invalid, invalid
from controller.monitors.kinds import IMAP_POP
from shared.addresses import is_blocked
from shared.sidechecks.readiness import LISTED_MAX, SELECTOR_MAX, selector

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Separators, quotes and brackets of address lists and display names (RFC 5322 specials).
_NOT_IN_LOCAL = frozenset(' ,;:<>()[]\\"@')
COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)

CHECK_INTERVAL_DEFAULT, CHECK_INTERVAL_MIN, CHECK_INTERVAL_MAX = 60, 10, 86_400
TIMEOUT_DEFAULT, TIMEOUT_MIN, TIMEOUT_MAX = 30, 1, 300
NAME_MAX = 200
FOLDER_MAX = 200
FOLDERS_MAX = 20
# IMAP mailbox names are sent quoted; these would end the quoted string or the command.
_NOT_IN_FOLDER = frozenset('"\\')
# The characters `str.strip` and `str.isspace` count white space, as a regular-expression class:
# `\s` is another set in JSON Schema's dialect (ECMA-262) than in Python's, so documents spell
# it out.
WHITE_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def no_nul(value: object, path: str) -> None:
    """PostgreSQL stores no NUL character in text or JSONB: a 400 naming the field holding one.

    Walks request Structs (by their wire names), lists and dicts down to the strings.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid(path, f"{path} must not contain NUL characters (\\u0000)")
    elif isinstance(value, msgspec.Struct):
        # The class's field and wire names: msgspec.structs.fields() would evaluate the type
        # annotations again on every call (~15 times the cost of the walk).
        cls = type(value)
        for name, wire in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True):
            no_nul(getattr(value, name), f"{path}.{wire}" if path else wire)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            no_nul(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul(key, path)
            no_nul(item, f"{path}.{key}")


def _bad_host(field: str, why: str) -> Invalid:
    return invalid(field, f"Invalid hostname: {why}", "invalid_hostname")


def hostname(value: str, field: str = "hostname") -> str:
    """A bare hostname (IDN → punycode, lower case) or an IP literal; no scheme, path or port."""
    text = value.strip()
    if not text or text != value or any(ch.isspace() for ch in text):
        raise _bad_host(field, "must not be empty or contain spaces")
    if "://" in text or "/" in text:
        raise _bad_host(field, "give the host only, without protocol or path")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if "@" in text:
        raise _bad_host(field, "must not contain user info (`@`)")
    if ":" in text:
        raise _bad_host(field, "must not contain a port; use the `port` field")
    try:
        ascii_name = idna.encode(text.removesuffix("."), uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise _bad_host(field, str(exc)) from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _bad_host(field, "labels are 1-63 letters, digits or hyphens, 253 characters in all")
    if labels[-1].isdigit():
        raise _bad_host(field, "not a valid IP address")
    return ascii_name


def mail_domain(value: str | None, field: str = "mailDomain") -> str | None:
    """A domain name with at least two labels (IDN → punycode, lower case), not an address;
    null or empty: none (the monitor's mail DNS is not looked at)."""
    if value is None or not value.strip():
        return None
    domain = hostname(value, field)
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        if "." in domain:
            return domain
    raise invalid(field, f"{field} must be a domain name like example.com, not an address")


DEPENDS_ON_MAX = 20


def depends_on(values: list[str] | None, field: str = "dependsOn") -> list[str] | None:
    """What a monitor declares it depends on: each entry a monitor's public id (a UUID, lower
    case) or a host name (IDN → punycode, lower case), at most DEPENDS_ON_MAX, each once, in
    the order sent; null or empty: nothing. That a monitor id names a monitor of the
    organization is checked by the write (controller.monitors.writes)."""
    if not values:
        return None
    if len(values) > DEPENDS_ON_MAX:
        raise invalid(field, f"{field} lists at most {DEPENDS_ON_MAX} monitors or hosts")
    found: list[str] = []
    for i, value in enumerate(values):
        try:
            entry = str(uuid.UUID(value.strip()))
        except ValueError:
            entry = hostname(value, f"{field}[{i}]")
        if entry not in found:
            found.append(entry)
    return found


def dkim_selectors(values: list[str] | None, field: str = "dkimSelectors") -> list[str] | None:
    """The DKIM selectors a user lists for the readiness side check to read beside those a
    round trip's message is signed with and the common ones: at most LISTED_MAX, each a
    selector (`shared.sidechecks.readiness.selector`), lower case, each once, in the order
    sent; null or empty: none."""
    if not values:
        return None
    if len(values) > LISTED_MAX:
        raise invalid(field, f"{field} lists at most {LISTED_MAX} selectors")
    found: list[str] = []
    for i, value in enumerate(values):
        name = selector(value)
        if name is None:
            raise invalid(
                f"{field}[{i}]",
                f"{field}[{i}]: {value[:70]!r} is not a DKIM selector (dot-separated labels of"
                f" letters, digits, hyphens and underscores, at most {SELECTOR_MAX} characters)",
            )
        if name not in found:
            found.append(name)
    return found


def name(value: str, field: str = "name") -> str:
    """One line of text: a name ends up in e-mail subjects, where a line break cannot go. It
    is kept stripped; its length counts what was sent, white space around it included."""
    text = value.strip()
    if not text:
        raise invalid(field, f"{field} must not be empty")
    if len(value) > NAME_MAX:
        raise invalid(field, f"{field} must be at most {NAME_MAX} characters")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text):
        raise invalid(
            field, f"{field} must not contain control characters (line breaks, tabs and the like)"
        )
    return text


def port(value: int | None, field: str = "port") -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise invalid(field, f"{field} must be between 1 and 65535, or null for the default")
    return value


def protocol(value: str, field: str) -> str:
    """An IMAP/POP login's protocol, `imap` or `pop3` (any case, blanks around ignored)."""
    normalised = value.strip().lower()
    if normalised not in IMAP_POP.types:
        raise invalid(field, f"{field} must be imap or pop3")
    return normalised


def folders(values: list[str], field: str) -> list[str]:
    """1 to `FOLDERS_MAX` IMAP folder names, de-duplicated in the order given."""
    if not values or len(values) > FOLDERS_MAX:
        raise invalid(field, f"{field} must list 1 to {FOLDERS_MAX} folders")
    for name in values:
        # ASCII only: IMAP spells other names in modified UTF-7 (RFC 3501 5.1.3), which the
        # agent does not encode.
        printable = name.isascii() and name.isprintable()
        if (
            not name.strip()
            or len(name) > FOLDER_MAX
            or not printable
            or _NOT_IN_FOLDER & set(name)
        ):
            raise invalid(
                field,
                f"{field}: {name!r} is not a folder name (1-{FOLDER_MAX} printable ASCII"
                " characters, no quote or backslash)",
            )
    return list(dict.fromkeys(values))


def bounded(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise invalid(field, f"{field} must be between {low} and {high} seconds")
    return value


def default_timeout(check_interval: int) -> int:
    """A monitor's timeout when none is given: TIMEOUT_DEFAULT, or its interval if shorter."""
    return min(TIMEOUT_DEFAULT, check_interval)


def timeout_fits(check_interval: int, timeout_seconds: int) -> bool:
    """A check ends before its monitor's next round: its timeout is at most its interval."""
    return timeout_seconds <= check_interval


def interval_and_timeout(check_interval: int, timeout_seconds: int) -> None:
    bounded(check_interval, "checkInterval", CHECK_INTERVAL_MIN, CHECK_INTERVAL_MAX)
    bounded(timeout_seconds, "timeoutSeconds", TIMEOUT_MIN, TIMEOUT_MAX)
    if not timeout_fits(check_interval, timeout_seconds):
        raise invalid("timeoutSeconds", "timeoutSeconds must not be greater than checkInterval")


def country_codes(values: list[str] | None) -> list[str] | None:
    """Upper-cased, de-duplicated ISO 3166-1 alpha-2 codes in the order given; [] → None."""
    if values is None:
        return None
    seen: list[str] = []
    for raw in values:
        code = raw.strip().upper()
        if code not in COUNTRIES:
            raise invalid(
                "allowedCheckCountryCodes",
                f"allowedCheckCountryCodes: {raw!r} is not an ISO 3166-1 alpha-2 country code",
                "invalid_country",
            )
        if code not in seen:
            seen.append(code)
    return seen or None


def email(value: str | None, field: str = "notificationEmail") -> str | None:
    """Exactly one address, `local@domain.tld`: alerts go to it as one RCPT TO, so a list
    (`a@x.com,root,postmaster`) or a bare local name (`root`, which a relay delivers locally)
    would let one field mail several people, or the relay's own mailboxes."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    local, _, domain = text.rpartition("@")
    if not (_one_local_part(local) and _mail_domain(domain)):
        raise invalid(
            field,
            f"{field} must be exactly one e-mail address like ops@example.com: no lists"
            " (`,`, `;`, spaces), no display name, no bare name like `root`",
        )
    return text


def _one_local_part(local: str) -> bool:
    """A dot-atom of at most 64 characters, without what separates or quotes addresses."""
    return (
        0 < len(local) <= 64
        and not any(ch in _NOT_IN_LOCAL or unicodedata.category(ch)[0] in "CZ" for ch in local)
        and not (local.startswith(".") or local.endswith(".") or ".." in local)
    )


def _mail_domain(domain: str) -> bool:
    """A host name with a dot (not an IP literal, not `localhost`)."""
    try:
        host = hostname(domain, "domain")
    except Invalid:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "." in host
    return False


def phone(value: str | None, field: str = "notificationPhoneNumber") -> str | None:
    """E.164 (`+4915112345678`); common spellings with spaces or dashes are normalised."""
    if value is None or not value.strip():
        return None
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise invalid(field, f"{field} must be a phone number in E.164 form like +4915112345678")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


STATUSES = {
    "active": "active",
    "maintenance": "maintenance",
    "disabled": "disabled",
    "paused": "disabled",
    "inactive": "disabled",
}


def status(value: str, field: str = "status") -> str:
    normalised = STATUSES.get(value.strip().lower())
    if normalised is None:
        raise invalid(
            field, f"{field} must be one of active, maintenance, disabled, paused, inactive"
        )
    return normalised


SECRET_ENV_PREFIX = "MAILPROBE_SECRET_"
SECRET_ENV_NAME = re.compile(rf"{SECRET_ENV_PREFIX}[A-Za-z0-9_]{{1,100}}")


def secret_env(
    value: dict[str, str] | None, paths: tuple[str, ...], field: str = "secretEnv"
) -> dict[str, str] | None:
    """Which environment variable monitors-as-code reads each secret from, by the secret's
    config path (`auth.pass`, `receive.password`): a label the API keeps for `export`, never a
    variable the controller reads. Each key one of the kind's `paths`, each name
    `MAILPROBE_SECRET_<NAME>`; null or {}: none."""
    if not value:
        return None
    for path, env in value.items():
        if path not in paths:
            raise invalid(
                field,
                f"{field}: {path!r} is not where this kind keeps a secret (one of"
                f" {', '.join(paths)})",
            )
        if not SECRET_ENV_NAME.fullmatch(env):
            raise invalid(
                field,
                f"{field}.{path}: {env!r} is not a variable name {SECRET_ENV_PREFIX}<NAME>"
                " (letters, digits, _; at most 100 after the prefix)",
            )
    return {path: value[path] for path in paths if path in value}


# What one monitor may list for its blocklist checks (`reputation`): with the lists' test
# entries, the mail domain and the host's and MX hosts' addresses, a round's names stay within
# what a result carries (shared.sidechecks.blocklists_bound.NAMES_MAX).
REPUTATION_IPS_MAX = 8
REPUTATION_DOMAINS_MAX = 4


def reputation(
    ips: list[str], domains: list[str], field: str = "reputation"
) -> dict[str, list[str]] | None:
    """The outbound addresses and domains a user lists for the blocklists: public unicast
    addresses only (a private one is the user's own network's: no public list knows it, and
    the agents must not tell a list of it), normalised and de-duplicated; domains as
    `mail_domain` takes them. None when both are empty."""
    if len(ips) > REPUTATION_IPS_MAX:
        raise invalid(f"{field}.ips", f"{field}.ips lists at most {REPUTATION_IPS_MAX} addresses")
    if len(domains) > REPUTATION_DOMAINS_MAX:
        raise invalid(
            f"{field}.domains", f"{field}.domains lists at most {REPUTATION_DOMAINS_MAX} domains"
        )
    out_ips: list[str] = []
    for i, raw in enumerate(ips):
        path = f"{field}.ips[{i}]"
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            raise invalid(path, f"{path}: {raw[:60]!r} is not an IP address") from None
        if is_blocked(str(address)):
            raise invalid(
                path,
                f"{path}: {address} is not a public address (private, loopback, reserved or"
                " documentation ranges are not on public blocklists)",
            )
        out_ips.append(str(address))
    out_domains = [mail_domain(d, f"{field}.domains[{i}]") or "" for i, d in enumerate(domains)]
    for i, d in enumerate(out_domains):
        if not d:
            raise invalid(f"{field}.domains[{i}]", f"{field}.domains[{i}] must not be empty")
    if not out_ips and not out_domains:
        return None
    return {"ips": list(dict.fromkeys(out_ips)), "domains": list(dict.fromkeys(out_domains))}
