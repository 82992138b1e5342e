"""A healthy SMTP server on loopback in a process of its own: the soak's target.

`python -m testkit.smtp_target PORT`: aiosmtpd answering every connection with its greeting and
EHLO, as a real MX would; it never sends mail. A plain asyncio server (not aiosmtpd's threaded
Controller), so one process serves a thousand monitors' checks without holding their sessions.
"""

import asyncio
import sys

from aiosmtpd.smtp import SMTP


class _Handler:
    """No hooks: the probes never send mail."""


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    # backlog as a busy MX has it: connections wait in the kernel, not refused
    server = await loop.create_server(
        lambda: SMTP(_Handler(), hostname="soak.example.com"),
        "127.0.0.1",
        port,
        backlog=4096,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
