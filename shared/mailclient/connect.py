"""Opening a mail session's transport on a socket the caller connected, or to an address.

On a socket the transport is shared/mailclient/socket_transport.py's (TLS by `ssl.SSLSocket`
on the socket itself, STARTTLS by its `start_tls`); to an address, the event loop's own.
"""

import asyncio
import socket
import ssl
from collections.abc import Callable

from shared.mailclient.socket_transport import SocketTransport, open_transport

# A connected socket (the agent dials the resolved addresses itself), or an (address, port).
Where = socket.socket | tuple[str, int]


async def transport(
    factory: Callable[[], asyncio.Protocol],
    where: Where,
    ctx: ssl.SSLContext | None,
    server_name: str,
) -> asyncio.Transport:
    """The transport of `factory`'s protocol at `where`, over TLS at once when `ctx` is given
    (the certificate checked for `server_name`, sent as SNI, whatever address was dialled). A
    socket given is closed when this fails."""
    if isinstance(where, socket.socket):
        return await open_transport(factory(), where, ctx, server_name)
    loop = asyncio.get_running_loop()
    hostname = server_name if ctx is not None else None
    made, _ = await loop.create_connection(
        factory, where[0], where[1], ssl=ctx, server_hostname=hostname
    )
    return made


async def upgrade(
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    ctx: ssl.SSLContext,
    server_name: str,
) -> asyncio.Transport:
    """TLS on the plain `transport` after the server agreed to STARTTLS; the transport the
    protocol writes to from here (the same one when it is a socket's)."""
    if isinstance(transport, SocketTransport):
        await transport.start_tls(ctx, server_name)
        return transport
    loop = asyncio.get_running_loop()
    made = await loop.start_tls(transport, protocol, ctx, server_hostname=server_name)  # type: ignore[arg-type]
    assert made is not None
    return made
