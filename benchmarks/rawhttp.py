"""Raw HTTP/1.1 over asyncio streams for the load generators: lighter than a client library, so the
benchmark machine spends its CPU on the collector, not on the load."""

from __future__ import annotations


async def read_response(reader) -> tuple[bytes, bytes]:
    """(status line, body) of one response on the stream."""
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status_line, await reader.readexactly(length)
