"""What a result may carry of the text servers and libraries wrote: valid UTF-8, never a secret.

Server replies reach a result raw: aiosmtplib decodes them with `surrogateescape`, so a Latin-1
greeting carries lone surrogates that no JSON encoder accepts, and a failure reply or an
exception text may echo the password the check sent. `run_check` passes every such text through
`publishable` once, where it builds the result.
"""

import base64

from aioimaplib import quoted

from shared.messages import (
    SECRET_MASK,
    CheckJob,
    ImapPopConfig,
    RoundTripConfig,
    SmtpAuth,
    SmtpConfig,
)
from shared.secret import Secret, secrets_in


def job_secrets(job: CheckJob) -> tuple[str, ...]:
    """The job's passwords in each form a server could echo them, longest first: as sent on
    the wire (base64 in SMTP AUTH PLAIN and LOGIN, a quoted string in IMAP LOGIN) and as is.
    Which passwords: every `Secret` its config holds (shared.secret), so a secret field added
    to a config is redacted with no change here."""
    config = job.config
    forms: list[str] = []
    for holder, secret in _holders(config, job.monitor_type):
        if secret:
            forms.extend(_forms(holder, secret.reveal()))
    forms.extend(s.reveal() for _, s in secrets_in(config) if s)
    unique = dict.fromkeys(forms)
    return tuple(sorted(unique, key=len, reverse=True))


def _holders(
    config: SmtpConfig | ImapPopConfig | RoundTripConfig, protocol: str
) -> list[tuple[SmtpAuth | str, Secret]]:
    """Each login's secret with what says how it is sent: its SMTP auth, or the mailbox's
    protocol."""
    if isinstance(config, RoundTripConfig):
        return _holders(config.send, "smtp") + _holders(config.receive, config.receive.protocol)
    if isinstance(config, SmtpConfig):
        return [] if config.auth is None else [(config.auth, config.auth.password)]
    return [(protocol, config.password)]


def _forms(holder: SmtpAuth | str, password: str) -> tuple[str, ...]:
    if isinstance(holder, SmtpAuth):
        return (_b64(f"\0{holder.user}\0{password}"), _b64(password))
    if holder == "imap":
        return (quoted(password)[1:-1],)
    return ()


def publishable(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with each secret masked and anything that is not valid UTF-8 replaced."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, SECRET_MASK)
    return valid_utf8(text)


def valid_utf8(text: str) -> str:
    """`text`, or, when it holds lone surrogates, the server's bytes behind them decoded with
    U+FFFD for what is not UTF-8 (`Gr\\udcfc\\udcdfe` becomes `Gr��e`)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no decoder escaped: not from a server's bytes
            raw = text.encode("utf-8", "replace")
        return raw.decode("utf-8", "replace")
    return text


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")
