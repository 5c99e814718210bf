"""The demo's people and its fact-reader talking to the forge over its REST API.

Performs HTTP I/O (httpx) with the seeded users' personal tokens: the same API a person's
browser or `gh` would use. No trunkline code is involved on this side.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class ForgeClient:
    base_url: str
    tokens: Mapping[str, str]  # login -> personal token
    reader: str  # whose token reads
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v3"

    def close(self) -> None:
        self.http.close()

    def _headers(self, login: str | None) -> dict[str, str]:
        token = self.tokens[login or self.reader]
        return {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}

    def call(
        self, method: str, path: str, *, login: str | None = None, body: Any = None
    ) -> httpx.Response:
        return self.http.request(
            method, f"{self.api_url}{path}", json=body, headers=self._headers(login)
        )

    def get(self, path: str, *, login: str | None = None) -> Any:
        response = self.call("GET", path, login=login)
        response.raise_for_status()
        return response.json()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.base_url}/_forge/{path}", json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    # -- people's actions ------------------------------------------------------------------

    def add_label(self, repo: str, issue: int, label: str, login: str) -> int:
        path = f"/repos/{repo}/issues/{issue}/labels"
        return self.call("POST", path, login=login, body={"labels": [label]}).status_code

    def comment(self, repo: str, issue: int, body: str, login: str) -> int:
        path = f"/repos/{repo}/issues/{issue}/comments"
        return self.call("POST", path, login=login, body={"body": body}).status_code

    def approve(self, repo: str, pr: int, sha: str, login: str, body: str) -> int:
        path = f"/repos/{repo}/pulls/{pr}/reviews"
        payload = {"commit_id": sha, "event": "APPROVE", "body": body}
        return self.call("POST", path, login=login, body=payload).status_code

    # -- reads -----------------------------------------------------------------------------

    def pull(self, repo: str, pr: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/repos/{repo}/pulls/{pr}")
        return result

    def check_runs(self, repo: str, sha: str) -> list[dict[str, Any]]:
        data = self.get(f"/repos/{repo}/commits/{sha}/check-runs?per_page=100")
        runs: list[dict[str, Any]] = data.get("check_runs", [])
        return runs

    def issue_comments(self, repo: str, issue: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(
            f"/repos/{repo}/issues/{issue}/comments?per_page=100"
        )
        return result

    def issue_state(self, repo: str, issue: int) -> str:
        return str(self.get(f"/repos/{repo}/issues/{issue}").get("state", ""))

    def issue_author(self, repo: str, issue: int) -> str:
        return str(self.get(f"/repos/{repo}/issues/{issue}")["user"]["login"])

    def file_text(self, repo: str, path: str, ref: str) -> str | None:
        response = self.call("GET", f"/repos/{repo}/contents/{path}?ref={ref}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return base64.b64decode(response.json()["content"]).decode("utf-8")

    def pushes(self, repo: str, ref: str) -> list[dict[str, Any]]:
        """The payloads of the forge's `push` deliveries for `ref`, oldest first."""
        found = []
        seen: set[str] = set()
        for summary in self.admin("GET", "deliveries"):
            if summary.get("event") != "push" or summary.get("guid") in seen:
                continue
            seen.add(str(summary.get("guid")))
            delivery = self.admin("GET", f"deliveries/{summary['id']}")
            payload = delivery.get("payload") or {}
            if payload.get("ref") == ref and payload.get("repository", {}).get("full_name") == repo:
                found.append(payload)
        return found

    def failed_deliveries(self) -> list[int]:
        """Deliveries that never reached the bot (it was down), oldest first."""
        summaries = self.admin("GET", "deliveries")
        delivered = {s.get("guid") for s in summaries if s.get("status") == "delivered"}
        return [
            int(s["id"])
            for s in summaries
            if s.get("status") == "failed" and s.get("guid") not in delivered
        ]

    def redeliver(self, delivery_id: int) -> None:
        self.admin("POST", f"deliveries/{delivery_id}/redeliver")
