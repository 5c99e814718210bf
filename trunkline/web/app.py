"""The standalone dashboard application (`trunkline dashboard`) and the mountable routers.

Performs I/O only through the routers it includes. `create_dashboard_app` is what the
standalone command serves; the bot app includes the same two routers:

    app.include_router(
        create_dashboard(engine, settings, clock, should_stop=lambda: server.should_exit),
        prefix="/dashboard",
    )
    app.include_router(create_metrics_router(engine, settings, clock))
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import Engine

from trunkline.clock import Clock
from trunkline.settings import Settings
from trunkline.web.dashboard import DEFAULT_POLL_SECONDS, create_dashboard
from trunkline.web.metrics import create_metrics_router


def create_dashboard_app(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    should_stop: Callable[[], bool] = lambda: False,
) -> FastAPI:
    """Dashboard at `/`, metrics at `/metrics`, health at `/healthz`; read-only.

    `should_stop` ends open event streams (see `create_dashboard`).
    """
    app = FastAPI(title="trunkline dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(create_metrics_router(engine, settings, clock))
    app.include_router(
        create_dashboard(
            engine, settings, clock, poll_seconds=poll_seconds, should_stop=should_stop
        )
    )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
