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


def wait_ready(port: int, proc, timeout: float, what: str) -> None:
    """Block until the collector on ``port`` answers /readyz; exit the benchmark if it dies or never does."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"collector on {port} exited; {what}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"collector on {port} not ready within {timeout:g} s; {what}")
        time.sleep(0.2)
