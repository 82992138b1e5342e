"""Reporters posting from other addresses, in a process of their own so that their TLS and
their waiting cost the watched controller nothing: `python -m tests.reports.posting URL CA
ADDRESSES BODY...` posts every BODY file, in order, from each loopback address of ADDRESSES
(comma-separated), all addresses at once, and prints each address's statuses as JSON. CA is
the PEM file the server's certificate chains to, or `-` for plain HTTP."""

import asyncio
import json
import ssl
import sys
from pathlib import Path

import httpx

HEADERS = {"Content-Type": "application/tlsrpt+gzip"}


async def _post(
    url: str, ctx: ssl.SSLContext | bool, address: str, bodies: list[bytes]
) -> list[int]:
    transport = httpx.AsyncHTTPTransport(verify=ctx, local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=300) as client:
        return [(await client.post(url, content=b, headers=HEADERS)).status_code for b in bodies]


async def main(url: str, ca: str, addresses: str, bodies: list[bytes]) -> None:
    ctx = ssl.create_default_context(cafile=ca) if ca != "-" else False
    every = addresses.split(",")
    answers = await asyncio.gather(*(_post(url, ctx, a, bodies) for a in every))
    print(json.dumps(dict(zip(every, answers, strict=True))))


if __name__ == "__main__":
    files = [Path(f).read_bytes() for f in sys.argv[4:]]
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], files))
