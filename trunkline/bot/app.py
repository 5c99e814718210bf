"""The FastAPI application factory: webhook intake, health, readiness and the deliveries API.

Performs I/O at the HTTP edge and through the store. No globals: everything the app needs is
passed to `create_app`. The request path of `POST /webhooks` verifies the signature, decides
(pure, `trunkline.bot.intake`), hands the delivery to the group-commit writer and answers once
it is durable: 202 new, 200 repeat, 400 rejected (stored), 401 unsigned (not stored). No GitHub
call and no slow work happen there; processing runs later as a job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.routing import Route

from trunkline.bot.intake import MAX_BODY_BYTES, decide_intake
from trunkline.errors import ConfigurationError
from trunkline.settings import Settings
from trunkline.store.deliveries import list_deliveries
from trunkline.store.delivery_writer import DeliveryWriter
from trunkline.store.engine import engine_from_settings
from trunkline.store.schema import SchemaState, check_schema, require_current

log = logging.getLogger(__name__)


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(
        content=json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


ACCEPTED = _json(202, {"status": "accepted"})


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    on_jobs_enqueued: Callable[[int], None] | None = None,
    require_schema: bool = True,
    expose_deliveries: bool = True,
) -> FastAPI:
    """Build the web application.

    `engine` defaults to one built from `settings` (and disposed with the app). The app refuses
    to start on a database whose schema is not current (`trunkline db upgrade`), unless
    `require_schema` is False (then `/readyz` reports it). `on_jobs_enqueued` is told how many
    new jobs each commit created (the in-process worker pool uses it to wake up).
    """
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise ConfigurationError("TRUNKLINE_WEBHOOK_SECRET is not set; webhooks cannot be verified")
    secret = settings.webhook_secret.get_secret_value().encode()
    owns_engine = engine is None
    db = engine if engine is not None else engine_from_settings(settings)
    if require_schema:
        require_current(db)
    writer = DeliveryWriter(db, max_batch=settings.intake_batch_max, on_committed=on_jobs_enqueued)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(writer.stop)
            if owns_engine:
                db.dispose()

    app = FastAPI(title="trunkline", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.writer = writer
    app.state.engine = db

    async def webhooks(request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _json(413, {"error": "payload too large"})
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _json(413, {"error": "payload too large"})
        decision = decide_intake(secret, request.headers, body, lambda: uuid.uuid4().hex)
        if decision.delivery is None:
            return _json(decision.status, {"error": decision.message})
        try:
            new = await writer.store(decision.delivery)
        except Exception:
            log.exception("delivery not stored", extra={"delivery": decision.delivery.delivery_id})
            return _json(503, {"error": "the delivery could not be stored; retry later"})
        if decision.status != 202:
            log.info(
                "delivery rejected",
                extra={"delivery": decision.delivery.delivery_id, "reason": decision.message},
            )
            return _json(decision.status, {"error": decision.message})
        if not new:
            return _json(200, {"status": "duplicate"})
        return ACCEPTED

    # The hot path is a plain Starlette route: it needs no validation or dependency
    # injection, and skipping FastAPI's request machinery there is measurably cheaper.
    app.router.routes.append(Route("/webhooks", webhooks, methods=["POST"]))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            status = check_schema(db)
        except Exception as error:
            return _json(503, {"ready": False, "reason": f"database unreachable: {error}"})
        if status.state is not SchemaState.UP_TO_DATE:
            return _json(503, {"ready": False, "reason": status.message})
        return _json(200, {"ready": True, "schema": list(status.current)})

    if expose_deliveries:
        from trunkline.web.auth import token_guard

        # Who sent what is for operators: behind TRUNKLINE_DASHBOARD_TOKEN when one is set
        # (`serve` leaves the route out on a public address without a token).
        @app.get("/api/deliveries", dependencies=[Depends(token_guard(settings))])
        def deliveries(
            limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        ) -> JSONResponse:
            records = list_deliveries(db, limit=limit)
            return JSONResponse([record.as_json() for record in records])

    return app
