"""`make run`'s alert sink: what mailprobe would have sent, caught on loopback and shown.

With no NOTIFY_SMTP_URL (or no NOTIFY_SMS_WEBHOOK_URL), `make run` points the controller at this
process instead: an SMTP server (aiosmtpd) that accepts every message and an HTTP server that
takes the SMS webhook's JSON POSTs on `/sms`. Each notification caught prints one console line,
and `GET /` on the HTTP port lists the latest ones (newest first) as JSON. Nothing leaves the
machine. A development tool, not part of the product: deployments name a real relay.

    python tools/alertsink.py --smtp-port 2525 --http-port 8025
"""

import argparse
import email
import email.policy
import json
import signal
import threading
from collections import deque
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from shared.timefmt import iso_ms, utcnow

KEPT = 200  # the view shows the latest this many
SMS_BODY_MAX = 64 * 1024


class Sink:
    """The notifications caught, newest last; thread-safe (SMTP and HTTP run in threads)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._items: deque[dict[str, str]] = deque(maxlen=kept)
        self._lock = threading.Lock()

    def add(self, channel: str, to: str, subject: str, text: str) -> None:
        item = {
            "channel": channel,
            "to": to,
            "subject": subject,
            "text": text,
            "at": iso_ms(utcnow()),
        }
        with self._lock:
            self._items.append(item)
        shown = subject if channel == "email" else text
        print(f"[alert sink] {channel} to {to}: {shown}", flush=True)

    def latest(self) -> list[dict[str, str]]:
        with self._lock:
            return list(reversed(self._items))


class _MailHandler:
    """aiosmtpd handler: every message accepted and noted once per recipient."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = ""
        if isinstance(message, EmailMessage):
            body = message.get_body(("plain",))
            text = body.get_content() if isinstance(body, EmailMessage) else ""
        for rcpt in envelope.rcpt_tos:
            self._sink.add("email", rcpt, str(message.get("Subject", "")), text)
        return "250 OK: caught by the alert sink, not delivered"


def _http_handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/messages"):
                self._answer(404, {"error": "GET / lists the notifications caught"})
                return
            self._answer(200, {"messages": sink.latest()})

        def do_POST(self) -> None:
            if self.path != "/sms":
                self._answer(404, {"error": "POST the SMS webhook's JSON to /sms"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                if length > SMS_BODY_MAX:
                    raise ValueError("too long")
                body = json.loads(self.rfile.read(length))
                to, text = body["to"], body["text"]
                if not (isinstance(to, str) and isinstance(text, str)):
                    raise ValueError("to and text must be strings")
            except (ValueError, KeyError, TypeError) as exc:
                self._answer(400, {"error": f"expected JSON {{to, text}}: {exc}"})
                return
            sink.add("sms", to, "", text)
            self._answer(200, {"caught": True})

        def _answer(self, status: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the sink prints one line per notification, not per request."""

    return Handler


class Running:
    """The sink's two servers, started; `stop()` ends both."""

    def __init__(self, sink: Sink, smtp_port: int, http_port: int, host: str = "127.0.0.1") -> None:
        self.sink = sink
        self._smtp = Controller(_MailHandler(sink), hostname=host, port=smtp_port)
        self._smtp.start()
        self._http = ThreadingHTTPServer((host, http_port), _http_handler(sink))
        self.smtp_port = smtp_port
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--http-port", type=int, default=8025)
    args = parser.parse_args()
    running = Running(Sink(), args.smtp_port, args.http_port)
    print(
        f"[alert sink] catching e-mail on smtp://127.0.0.1:{running.smtp_port} and SMS on"
        f" http://127.0.0.1:{running.http_port}/sms; see them at http://127.0.0.1:{running.http_port}/",
        flush=True,
    )
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    running.stop()


if __name__ == "__main__":
    main()
