"""The HTTP floor for ingest.py --http-floor: what answering one report request costs with nothing behind it.

Two apps under the collector's own uvicorn settings (collector/cli/serve.py: uvicorn.run with
log_level="info", no access log, no proxy headers, after collector.cli.runtime.tune()), each reading the
whole body of POST /api/v1/reports and answering 202 with the collector's JSON:

- ``asgi``: a raw ASGI callable, the least any Python server on uvicorn can do;
- ``starlette``: a bare Starlette app (routing, Request, JSONResponse), what FastAPI is built on.

The collector's CPU per report above these is what its own work costs (middleware, authentication,
parsing, validation, the store).
"""

from __future__ import annotations

KINDS = ("asgi", "starlette")
ANSWER = b'{"accepted":1,"duplicates":0}'


def raw_asgi():
    async def app(scope, receive, send):
        if scope["type"] != "http":  # lifespan: nothing to start
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        b"".join(chunks)
        ok = scope["path"] == "/readyz" or (scope["method"] == "POST" and scope["path"] == "/api/v1/reports")
        body = ANSWER if ok else b'{"detail":"Not Found"}'
        await send({"type": "http.response.start", "status": (200 if scope["path"] == "/readyz" else 202) if ok
                    else 404, "headers": [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def bare_starlette():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def reports(request):
        await request.body()
        return JSONResponse({"accepted": 1, "duplicates": 0}, status_code=202)

    async def ready(request):
        return JSONResponse({"ready": True})

    return Starlette(routes=[Route("/api/v1/reports", reports, methods=["POST"]), Route("/readyz", ready)])


def serve_floor(kind: str, port: int) -> None:
    import uvicorn

    from collector.cli import runtime

    runtime.tune()
    app = raw_asgi() if kind == "asgi" else bare_starlette()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", access_log=False, proxy_headers=False)
