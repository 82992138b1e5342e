import asyncio, ssl, time
import trustme
from controller.reports.mailbox import pop3, ReportMailbox
from controller.reports.mailbox.pop3 import _open, _login, RETR_MAX
from controller.reports.mailbox.message import Oversized
from shared.secret import Secret
from tests.reports.evil_mail import EvilPop3, Held

async def main():
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); ca.issue_cert("127.0.0.1").configure_cert(ctx)
    async with EvilPop3(ctx, [Held(declared=100, flood=300<<20)]) as server:
        box = ReportMailbox(1, "127.0.0.1", server.port, "alice", Secret("x"), ca_pem=ca.cert_pem.bytes().decode(), protocol="pop3", security="tls", timeout_s=1.0)
        s = await _open(box); await _login(s, box)
        await s.command("RETR 1", "x")
        t = time.perf_counter()
        try: await s.lines(RETR_MAX, Oversized)
        except Oversized as e: print("over", e, server.seen.flooded, time.perf_counter() - t)
        for i in range(20):
            await asyncio.sleep(0.1)
        print("after 2s", server.seen.flooded, s.writer.transport.is_closing())
asyncio.run(main())
