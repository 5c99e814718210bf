"""The dashboard router: overview, work item timeline, live feed (server-sent events), assets.

Performs I/O (reads the store through `trunkline.web.queries`, in worker threads so the event
loop never blocks on the database). `create_dashboard(engine, settings, clock)` returns an
`APIRouter` any FastAPI app can include (the bot app under `trunkline serve`, or the
standalone app of `trunkline dashboard`). Read-only: it has only GET routes. When
`settings.dashboard_token` is set, every route needs it (bearer or basic auth, 401 otherwise).
Templates autoescape everything; the page script builds nodes with textContent only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import Engine

from trunkline.clock import Clock
from trunkline.settings import Settings
from trunkline.web import queries
from trunkline.web.auth import token_guard
from trunkline.web.timeline import (
    Entry,
    Links,
    build_entries,
    item_links,
    latest_document,
    spend_of,
)

DEFAULT_POLL_SECONDS = 0.75
KEEPALIVE_SECONDS = 15.0
# A stream ends after this long; the browser reconnects at once with Last-Event-ID and
# misses nothing. Bounds how long a server shutdown can wait for open streams.
STREAM_LIFETIME_SECONDS = 300.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def template_environment() -> Environment:
    """The Jinja2 environment of the dashboard (autoescape on for every template)."""
    return Environment(
        loader=PackageLoader("trunkline.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("trunkline.web").joinpath("static")
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in _STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    return files


def _sse(event: str, data: dict[str, Any], event_id: str) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _parse_cursor(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    first, _, second = value.partition(":")
    if first.isdigit() and second.isdigit():
        return int(first), int(second)
    return None


def item_path(request: Request, ref: tuple[str, int]) -> tuple[str, str]:
    """The dashboard path of a work item and its `OWNER/REPO#N` label."""
    repo, issue = ref
    owner, _, name = repo.partition("/")
    path = request.url_for("dashboard_item", owner=owner, name=name, number=issue).path
    return path, f"{repo}#{issue}"


def create_dashboard(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    should_stop: Callable[[], bool] = lambda: False,
) -> APIRouter:
    """The dashboard's routes (named `dashboard_*`; links are built with `url_for`).

    `should_stop` is asked before every poll of an open event stream; when it says True
    (the server is shutting down: pass `lambda: server.should_exit`) streams end, so a
    graceful shutdown does not wait for browsers to go away.
    """
    env = template_environment()
    static = _static_files()
    web_base = settings.github_web_url
    budget = settings.daily_budget_usd
    router = APIRouter(dependencies=[Depends(token_guard(settings))])

    def render(request: Request, template: str, **context: Any) -> HTMLResponse:
        def url(route: str, /, **params: Any) -> str:
            return request.url_for(route, **params).path

        html = env.get_template(template).render(
            url=url,
            now=clock.now(),
            events_url=url("dashboard_events")
            + "?"
            + (f"item={context['item'].id}&" if "item" in context else ""),
            item_url=lambda item: url(
                "dashboard_item",
                owner=item.repo.partition("/")[0],
                name=item.repo.partition("/")[2],
                number=item.issue_number,
            ),
            links=lambda repo: Links(web_base, repo),
            **context,
        )
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    @router.get("/", name="dashboard_overview", response_class=HTMLResponse)
    async def overview(request: Request) -> HTMLResponse:
        now = clock.now()
        data = await asyncio.to_thread(queries.load_overview, engine, now, budget)
        cursor = await asyncio.to_thread(queries.latest_cursor, engine, None)
        recent = build_entries(data.recent, (), None)
        recent.reverse()
        refs = await asyncio.to_thread(
            queries.item_refs, engine, {e.work_item_id for e in data.recent if e.work_item_id}
        )
        recent_items = {item_id: item_path(request, ref) for item_id, ref in refs.items()}
        return render(
            request,
            "overview.html",
            page="overview",
            refresh="items queues locks spend",
            overview=data,
            recent=recent,
            recent_items=recent_items,
            cursor=cursor,
        )

    @router.get(
        "/items/{owner}/{name}/{number}", name="dashboard_item", response_class=HTMLResponse
    )
    async def work_item(request: Request, owner: str, name: str, number: int) -> HTMLResponse:
        detail = await asyncio.to_thread(queries.load_work_item, engine, f"{owner}/{name}", number)
        if detail is None:
            raise HTTPException(status_code=404, detail=f"no work item {owner}/{name}#{number}")
        entries = build_entries(detail.events, detail.steps, Links(web_base, detail.item.repo))
        cursor = (
            max((e.id for e in detail.events), default=0),
            max((s.id for s in detail.steps), default=0),
        )
        return render(
            request,
            "work_item.html",
            page="item",
            refresh="summary plan review",
            item=detail.item,
            entries=entries,
            cursor=cursor,
            plan=latest_document(detail, "plan"),
            review=latest_document(detail, "review"),
            item_links=item_links(detail, web_base),
            spend=spend_of(detail),
            approvals=detail.approvals,
        )

    @router.get("/events", name="dashboard_events")
    async def events(
        request: Request,
        item: Annotated[int | None, Query(ge=1)] = None,
        after_event: Annotated[int | None, Query(ge=0)] = None,
        after_step: Annotated[int | None, Query(ge=0)] = None,
    ) -> StreamingResponse:
        resumed = _parse_cursor(request.headers.get("last-event-id"))
        if resumed is not None:
            cursor = resumed
        elif after_event is not None and after_step is not None:
            cursor = (after_event, after_step)
        else:
            cursor = await asyncio.to_thread(queries.latest_cursor, engine, item)

        async def stream() -> AsyncIterator[str]:
            after_e, after_s = cursor
            opened = quiet_since = clock.monotonic()
            yield "retry: 2000\n\n"
            while not should_stop() and not await request.is_disconnected():
                if clock.monotonic() - opened >= STREAM_LIFETIME_SECONDS:
                    return
                new_events, new_steps = await asyncio.to_thread(
                    queries.new_since, engine, item, after_e, after_s
                )
                entries: list[Entry] = []
                if new_events or new_steps:
                    refs = await asyncio.to_thread(
                        queries.item_refs,
                        engine,
                        {e.work_item_id for e in new_events if e.work_item_id is not None}
                        | {s.work_item_id for s in new_steps if s.work_item_id is not None},
                    )
                    for event in new_events:
                        entries.extend(build_entries((event,), (), Links(web_base, event.repo)))
                    entries.extend(build_entries((), new_steps, None))
                    entries.sort(key=lambda e: (e.at, e.key[0] == "s", int(e.key[1:])))
                    after_e = max([after_e, *(e.id for e in new_events)])
                    after_s = max([after_s, *(s.id for s in new_steps)])
                    for entry in entries:
                        payload = entry.as_json()
                        ref = refs.get(entry.work_item_id or 0)
                        if ref is not None:
                            payload["item_url"], payload["item_ref"] = item_path(request, ref)
                        yield _sse("entry", payload, f"{after_e}:{after_s}")
                    quiet_since = clock.monotonic()
                elif clock.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                    yield ": keepalive\n\n"
                    quiet_since = clock.monotonic()
                await asyncio.sleep(poll_seconds)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
        )

    @router.get("/static/{name}", name="dashboard_static")
    async def static_file(name: str) -> Response:
        found = static.get(name)
        if found is None:
            raise HTTPException(status_code=404, detail="no such file")
        body, media_type = found
        return Response(
            body,
            media_type=media_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"},
        )

    return router
