"""REST routes for check runs and check suites.

Only GitHub Apps (installation tokens) may create or update check runs, as on GitHub. A
check run joins the suite of its App and head sha, created on first use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from trunkline.forge import gitrepo
from trunkline.forge import models as m
from trunkline.forge import render_code as rc
from trunkline.forge.api_support import (
    ApiError,
    Ctx,
    ctx,
    json_response,
    not_found,
    paginate,
    str_field,
    validation,
)

router = APIRouter()
CtxDep = Annotated[Ctx, Depends(ctx)]
Payload = Annotated[dict[str, Any], Body()]

STATUSES = ("queued", "in_progress", "completed")
CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
)


def _app(c: Ctx) -> m.App:
    if c.principal is None or c.principal.installation is None or c.principal.app is None:
        raise ApiError(403, "You must authenticate via a GitHub App.")
    return c.principal.app


def _timestamp(payload: dict[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise validation("CheckRun", key, "invalid") from exc


def _fields(payload: dict[str, Any]) -> dict[str, Any]:
    """Validated check run fields present in `payload` (create and update share these)."""
    out: dict[str, Any] = {}
    if "status" in payload:
        if payload["status"] not in STATUSES:
            raise validation("CheckRun", "status", "invalid")
        out["status"] = payload["status"]
    if "conclusion" in payload and payload["conclusion"] is not None:
        if payload["conclusion"] not in CONCLUSIONS:
            raise validation("CheckRun", "conclusion", "invalid")
        out["conclusion"] = payload["conclusion"]
    for key in ("external_id", "details_url", "name"):
        if key in payload:
            out[key] = str_field(payload, key, "CheckRun", required=False)
    for key in ("started_at", "completed_at"):
        if key in payload:
            out[key] = _timestamp(payload, key)
    output = payload.get("output")
    if isinstance(output, dict):
        out["output_title"] = output.get("title")
        out["output_summary"] = output.get("summary")
        out["output_text"] = output.get("text")
    if out.get("status") == "completed" and "conclusion" not in out:
        raise validation("CheckRun", "conclusion", "missing_field")
    return out


@router.post("/repos/{owner}/{repo}/check-runs")
def create_check_run(owner: str, repo: str, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    app = _app(c)
    name = str_field(payload, "name", "CheckRun") or ""
    sha = gitrepo.resolve(
        c.state.repo_git_path(r), str_field(payload, "head_sha", "CheckRun") or ""
    )
    if sha is None:
        raise validation("CheckRun", "head_sha", "invalid")
    fields = _fields(payload)
    now = c.state.now()
    run = m.CheckRun(
        id=c.state.new_id(),
        repo_id=r.id,
        suite_id=0,
        app_id=app.id,
        head_sha=sha,
        name=name,
        status=fields.pop("status", "queued"),
        started_at=fields.pop("started_at", None) or now,
    )
    for key, value in fields.items():
        setattr(run, key, value)
    if run.conclusion is not None:
        run.status = "completed"
    if run.status == "completed" and run.completed_at is None:
        run.completed_at = now
    c.forge.create_check_run(r, app, run)
    with c.state.lock:
        return json_response(rc.check_run(c.state, c.urls, run), status=201)


def _run(c: Ctx, r: m.Repo, run_id: int) -> m.CheckRun:
    with c.state.lock:
        run = c.state.check_runs.get(run_id)
    if run is None or run.repo_id != r.id:
        raise not_found()
    return run


@router.get("/repos/{owner}/{repo}/check-runs/{run_id}")
def get_check_run(owner: str, repo: str, run_id: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    run = _run(c, r, run_id)
    with c.state.lock:
        return json_response(rc.check_run(c.state, c.urls, run))


@router.patch("/repos/{owner}/{repo}/check-runs/{run_id}")
def update_check_run(owner: str, repo: str, run_id: int, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    app = _app(c)
    run = _run(c, r, run_id)
    if run.app_id != app.id:
        raise ApiError(
            403, f"Invalid app_id `{app.id}` - check run can only be modified by its app"
        )
    c.forge.update_check_run(run, _fields(payload))
    with c.state.lock:
        return json_response(rc.check_run(c.state, c.urls, run))


@router.post("/repos/{owner}/{repo}/check-runs/{run_id}/rerequest")
def rerequest_check_run(owner: str, repo: str, run_id: int, c: CtxDep) -> Response:
    """Run a check again on the same commit. The forge's simulated CI reruns (a new check
    run on the same SHA); another App's run is rerequested by webhook, only by that App."""
    r = c.repo(owner, repo, m.Permission.WRITE)
    app = _app(c)
    run = _run(c, r, run_id)
    if not c.forge.rerun_ci(r, run) and run.app_id != app.id:
        raise ApiError(403, "This check run is not rerequestable by this app")
    return json_response({}, status=201)


def _ref_sha(c: Ctx, r: m.Repo, ref: str) -> str:
    sha = gitrepo.resolve(c.state.repo_git_path(r), ref)
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ref}")
    return sha


@router.get("/repos/{owner}/{repo}/commits/{ref:path}/check-runs")
def list_check_runs_for_ref(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    sha = _ref_sha(c, r, ref)
    q = c.request.query_params
    with c.state.lock:
        runs = [
            x
            for x in c.state.check_runs.values()
            if x.repo_id == r.id
            and x.head_sha == sha
            and (not q.get("check_name") or x.name == q.get("check_name"))
            and (not q.get("status") or x.status == q.get("status"))
        ]
        if q.get("filter", "latest") == "latest":
            latest: dict[tuple[int, str], m.CheckRun] = {}
            for x in sorted(runs, key=lambda x: x.id):
                latest[(x.app_id, x.name)] = x
            runs = list(latest.values())
        runs.sort(key=lambda x: -x.id)
        page, headers = paginate(c, runs)
        body = {
            "total_count": len(runs),
            "check_runs": [rc.check_run(c.state, c.urls, x) for x in page],
        }
    return json_response(body, headers=headers)


@router.get("/repos/{owner}/{repo}/commits/{ref:path}/check-suites")
def list_check_suites_for_ref(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    sha = _ref_sha(c, r, ref)
    with c.state.lock:
        suites = sorted(
            (x for x in c.state.check_suites.values() if x.repo_id == r.id and x.head_sha == sha),
            key=lambda x: x.id,
        )
        page, headers = paginate(c, suites)
    body = {
        "total_count": len(suites),
        "check_suites": [c.forge.render_suite(x, c.urls) for x in page],
    }
    return json_response(body, headers=headers)


@router.post("/repos/{owner}/{repo}/check-suites")
def create_check_suite(owner: str, repo: str, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    app = _app(c)
    sha = _ref_sha(c, r, str_field(payload, "head_sha", "CheckSuite") or "")
    with c.state.lock:
        existing = any(
            x.repo_id == r.id and x.app_id == app.id and x.head_sha == sha
            for x in c.state.check_suites.values()
        )
    suite = c.forge.suite_for(r, app.id, sha, c.forge.branch_of(r, sha))
    c.state.save()
    return json_response(c.forge.render_suite(suite, c.urls), status=200 if existing else 201)


@router.get("/repos/{owner}/{repo}/check-suites/{suite_id}")
def get_check_suite(owner: str, repo: str, suite_id: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    with c.state.lock:
        suite = c.state.check_suites.get(suite_id)
    if suite is None or suite.repo_id != r.id:
        raise not_found()
    return json_response(c.forge.render_suite(suite, c.urls))


@router.get("/repos/{owner}/{repo}/check-suites/{suite_id}/check-runs")
def list_check_runs_in_suite(owner: str, repo: str, suite_id: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    with c.state.lock:
        suite = c.state.check_suites.get(suite_id)
        if suite is None or suite.repo_id != r.id:
            raise not_found()
        runs = sorted(
            (x for x in c.state.check_runs.values() if x.suite_id == suite.id),
            key=lambda x: -x.id,
        )
        page, headers = paginate(c, runs)
        body = {
            "total_count": len(runs),
            "check_runs": [rc.check_run(c.state, c.urls, x) for x in page],
        }
    return json_response(body, headers=headers)
