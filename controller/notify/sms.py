"""SMS through an HTTP webhook: a JSON POST `{"to": "+4915112345678", "text": "…"}` to
NOTIFY_SMS_WEBHOOK_URL, with an `Idempotency-Key` header stable across retries. Any 2xx is
delivered; a 4xx other than 408 and 429 is refused for good (the request itself is wrong:
sending it again changes nothing); anything else is retried. Only the answer's status is read,
never its body, within twice the timeout. Basic-auth credentials may sit in the URL; they never
appear in an error."""

import asyncio
from urllib.parse import urlsplit

import httpx

from controller.notify import DeliveryError, Notification

_RETRYABLE = frozenset({408, 429})  # request timeout, too many requests: later may work


class SmsChannel:
    name = "sms"

    def __init__(self, url: str, *, timeout_s: float = 15.0) -> None:
        self._url = url
        self._timeout_s = timeout_s
        # Built once: a context is certifi's CA bundle parsed, ~50 ms of the event loop's CPU.
        self._tls = httpx.create_ssl_context()

    def validate(self) -> None:
        parts = urlsplit(self._url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("NOTIFY_SMS_WEBHOOK_URL must be an http:// or https:// URL")

    async def send(self, note: Notification) -> None:
        try:
            async with (
                asyncio.timeout(2 * self._timeout_s),  # the whole call, however slow the drip
                httpx.AsyncClient(timeout=self._timeout_s, verify=self._tls) as client,
                client.stream(
                    "POST",
                    self._url,
                    json={"to": note.target, "text": note.text},
                    headers={"Idempotency-Key": note.key},
                ) as response,
            ):
                code = response.status_code  # the answer's body is never read
        except (httpx.TimeoutException, TimeoutError):
            raise DeliveryError(
                f"SMS webhook did not answer within {self._timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS webhook unreachable: {type(exc).__name__}") from None
        if not 200 <= code < 300:
            permanent = 400 <= code < 500 and code not in _RETRYABLE
            raise DeliveryError(
                f"SMS webhook answered HTTP {code}" + (" (not retried)" if permanent else ""),
                permanent=permanent,
            )
