"""What a result may carry of the text servers and libraries wrote: valid UTF-8, never a secret.

Server replies reach a result raw: aiosmtplib decodes them with `surrogateescape`, so a Latin-1
greeting carries lone surrogates that no JSON encoder accepts, and a failure reply or an
exception text may echo the password the check sent. `run_check` passes every such text through
`publishable` once, where it builds the result.
"""

import base64

from aioimaplib import quoted

from agent.probers.sasl import Login, initial_response
from shared.messages import (
    OAUTH2_MECHANISMS,
    SECRET_MASK,
    CheckJob,
    ImapPopConfig,
    RoundTripConfig,
    SmtpConfig,
)


def job_secrets(job: CheckJob) -> tuple[str, ...]:
    """The job's passwords and access tokens in each form a server could echo them, longest
    first: as sent on the wire (base64 in SMTP AUTH PLAIN and LOGIN and in every OAuth2 SASL
    message, a quoted string in IMAP LOGIN) and as is."""
    config = job.config
    if isinstance(config, RoundTripConfig):
        found = _smtp_secrets(config.send) + _mailbox_secrets(
            config.receive, config.receive.protocol
        )
    elif isinstance(config, SmtpConfig):
        found = _smtp_secrets(config)
    else:
        found = _mailbox_secrets(config, job.monitor_type)
    return tuple(sorted(found, key=len, reverse=True))


def _smtp_secrets(config: SmtpConfig) -> tuple[str, ...]:
    auth = config.auth
    if auth is None:
        return ()
    tokens = _token_secrets(auth.user, auth.access_token)
    if not auth.password:
        return tokens
    plain = _b64(f"\0{auth.user}\0{auth.password}")
    return (*tokens, plain, _b64(auth.password), auth.password)


def _mailbox_secrets(config: ImapPopConfig, protocol: str) -> tuple[str, ...]:
    tokens = _token_secrets(config.user, config.access_token)
    if not config.password:
        return tokens
    if protocol == "imap":
        return (*tokens, quoted(config.password)[1:-1], config.password)
    return (*tokens, config.password)


def _token_secrets(user: str, token: str) -> tuple[str, ...]:
    """An access token as is and inside each mechanism's initial response, whatever the
    mechanism the job names (a server may echo any of them)."""
    if not token:
        return ()
    wrapped = (initial_response(Login(user, "", m, token)) for m in sorted(OAUTH2_MECHANISMS))
    return (token, *wrapped)


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
