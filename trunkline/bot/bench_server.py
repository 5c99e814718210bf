"""The server side of `trunkline bench intake`: run the intake app, or a bare 202 endpoint.

Performs I/O (a uvicorn server on loopback until SIGTERM). Run as
`python -m trunkline.bot.bench_server {intake|bare} PORT`; the intake variant reads its settings
(DATABASE_URL, TRUNKLINE_WEBHOOK_SECRET) from the environment like `trunkline serve`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fastapi import FastAPI, Response


def bare_app() -> FastAPI:
    """The ceiling: FastAPI answering 202 to every POST /webhooks, storing nothing."""
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/webhooks")
    async def webhooks() -> Response:
        return Response(content=b'{"status":"accepted"}', status_code=202)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def uvicorn_options() -> dict[str, str]:
    """The fastest event loop and HTTP parser installed (uvloop/httptools when present)."""
    options = {"loop": "asyncio", "http": "h11"}
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        pass
    return options


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = list(sys.argv[1:] if argv is None else argv)
    kind, port = args[0], int(args[1])
    if kind == "bare":
        app = bare_app()
    else:
        from trunkline.bot.app import create_app
        from trunkline.settings import load_settings

        app = create_app(load_settings())
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        **uvicorn_options(),  # type: ignore[arg-type]
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
