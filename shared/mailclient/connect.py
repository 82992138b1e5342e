"""Opening a mail session's transport on a socket the caller connected, or to an address."""

import asyncio
import socket
import ssl
from collections.abc import Callable

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
    loop = asyncio.get_running_loop()
    hostname = server_name if ctx is not None else None
    if isinstance(where, socket.socket):
        try:
            made, _ = await loop.create_connection(
                factory, sock=where, ssl=ctx, server_hostname=hostname
            )
        except BaseException:
            where.close()
            raise
    else:
        made, _ = await loop.create_connection(
            factory, where[0], where[1], ssl=ctx, server_hostname=hostname
        )
    return made
