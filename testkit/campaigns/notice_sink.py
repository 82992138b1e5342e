"""An e-mail sink on loopback for the HA soak: aiosmtpd on a thread of its own (the harness
sleeps between faults, the sink keeps receiving), every message's Message-ID, Subject and
arrival kept. `tap` is called at each arrival before the answer, in the sink's thread: a fault
applied at the instant of sending."""

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy

from aiosmtpd.smtp import SMTP, Envelope, Session

from shared import embedded


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    subject: str
    at: float  # wall-clock seconds, as the database's timestamps


class NoticeSink:
    def __init__(self) -> None:
        self.port = embedded.free_port()
        self.tap: Callable[[Received], None] = lambda _: None
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="notice-sink", daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the notice sink did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            self._loop.create_server(
                lambda: SMTP(self, hostname="sink.test"), "127.0.0.1", self.port
            )
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        got = Received(str(msg["Message-ID"]), str(msg["Subject"]), time.time())
        with self._lock:
            self._received.append(got)
        self.tap(got)
        return "250 OK queued"
