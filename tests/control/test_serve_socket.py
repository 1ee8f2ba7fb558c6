"""The listening socket `vox serve` binds itself: accepted connections get TCP_NODELAY.

Without it (a socket made with proto 0, which asyncio does not recognise as TCP) every
response on a kept-alive connection waited for the client's delayed ACK: ~40 ms a request.
"""

from __future__ import annotations

import asyncio
import socket

from vox_control.settings import Settings
from vox_control.sockets import bind_tcp


async def test_accepted_connections_have_nodelay() -> None:
    listener = bind_tcp(Settings(host="127.0.0.1", port=0))
    port = listener.getsockname()[1]
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(seen, 5) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
