"""structlog set-up: JSON lines in deployment, pretty in a terminal, context via contextvars.

Two rules keep credentials out of every line, whatever LOG_LEVEL says:

- Below WARNING, only our own lines (structlog's) and the stdlib loggers of `BELOW_WARNING`
  are written. A dependency's INFO and DEBUG lines name what it talks to: httpx's request line
  holds the whole URL (a Slack or Teams webhook URL is its own credential, a Telegram bot token
  sits in the path, the SMS webhook's `user:password@` in the authority), urllib3's the path,
  aioimaplib's every line it sends (a LOGIN's password). A new dependency is held too.
- Every line written is scrubbed (`redact`): a URL keeps its scheme and host (and port), its
  user information, path, query and fragment are masked; so is the value of an `Authorization`
  and the credential after `Bearer`, `Basic` or `GenieKey`.
"""

import logging
import os
import re
import sys
from typing import Final, Literal

import msgspec
import structlog

from shared.secret import SECRET_MASK as MASK

LogFormat = Literal["json", "console", "auto"]

# The stdlib loggers written below WARNING: none of them names a URL's path or a credential.
BELOW_WARNING: Final = frozenset({"uvicorn.error"})
_URL: Final = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/?#@]*@)?(?P<host>[^\s/?#'\"<>]*)"
    r"(?P<rest>[/?#][^\s'\"<>]*)?"
)
# A cheap test for the words `_AUTH` starts from.
_AUTH_WORDS: Final = re.compile(r"(?i:authorization)|Bearer|Basic|GenieKey")
_AUTH: Final = re.compile(
    r"(?P<word>(?i:authorization)['\"]?\s*[:=]\s*['\"]?(?:(?:Bearer|Basic|GenieKey)\s+)?"
    r"|\b(?:Bearer|Basic|GenieKey)\s+)(?P<value>[^\s,;'\"}]+)"
)

# msgspec renders a log line in a fraction of the stdlib's time (one per request, one per check);
# what it cannot encode natively (an exception, a path) is written as its str().
_json_encoder = msgspec.json.Encoder(enc_hook=str)


def _dumps(event: object, **_: object) -> str:
    return _json_encoder.encode(event).decode()


def _url(m: re.Match[str]) -> str:
    user = f"{MASK}@" if m["user"] else ""
    rest = f"/{MASK}" if m["rest"] and m["rest"] != "/" else (m["rest"] or "")
    return f"{m['scheme']}{user}{m['host']}{rest}"


def redact(text: str) -> str:
    """`text` with every URL cut to its scheme and host and every authorization value masked."""
    if "://" in text:
        text = _URL.sub(_url, text)
    if not _AUTH_WORDS.search(text):  # most lines (one per check) name no authorization
        return text
    return _AUTH.sub(lambda m: m["word"] + MASK, text)


def _redact_values(
    _: structlog.types.WrappedLogger, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
        elif isinstance(value, BaseException):
            event_dict[key] = redact(str(value))
    return event_dict


class _OwnOrWarning(logging.Filter):
    """A stdlib record passes at WARNING and above, or from a logger of `BELOW_WARNING`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name in BELOW_WARNING


def colours_wanted() -> bool:
    """Colour codes only for a terminal, and never when NO_COLOR is set (no-color.org): a log
    piped or written to a file stays plain text."""
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def configure(fmt: LogFormat = "auto", level: str = "INFO") -> None:
    """Configure structlog and route stdlib logging (uvicorn, asyncio) through the same renderer."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=colours_wanted())
    )
    numeric = logging.getLevelNamesMapping()[level]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _redact_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_OwnOrWarning())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_values,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Dependencies' loggers make no record below WARNING (the filter drops any that one set
    # to a level of its own makes); ours follow LOG_LEVEL.
    root.setLevel(max(numeric, logging.WARNING))
    for name in BELOW_WARNING:
        logging.getLogger(name).setLevel(numeric)
