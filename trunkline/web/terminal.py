"""`trunkline status` and `trunkline timeline` in the terminal: rich tables or one JSON object.

Rendering is pure (records in, rich renderables / JSON-ready dicts out); the printing
functions write to the given rich `Console`. They show the same facts as the dashboard pages
because they read the same records and timeline entries.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trunkline.web.records import Overview, WorkItemDetail
from trunkline.web.timeline import Entry, item_links, latest_document, spend_of

_REF = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<number>[0-9]+)$")


def parse_ref(text: str) -> tuple[str, int]:
    """`OWNER/REPO#N` -> ("OWNER/REPO", N); ValueError with a clear message otherwise."""
    match = _REF.match(text.strip())
    if match is None:
        raise ValueError(f"expected OWNER/REPO#NUMBER (e.g. acme/api#12), got {text!r}")
    return match["repo"], int(match["number"])


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def overview_json(overview: Overview) -> dict[str, Any]:
    return {
        "generated_at": overview.generated_at.isoformat(),
        "work_items": {repo: overview.counts_for(repo) for repo in overview.repos},
        "items": _plain(list(overview.items)),
        "queues": [
            {"repo": repo, "base": base, "entries": _plain(entries)}
            for (repo, base), entries in overview.queues().items()
        ],
        "locks": _plain(list(overview.locks)),
        "waiters": _plain(list(overview.waiters)),
        "spend_today": {
            "usd": overview.spend_usd,
            "budget_usd": overview.budget_usd,
            "by_role_model": _plain(list(overview.spend)),
        },
    }


def detail_json(detail: WorkItemDetail, entries: list[Entry], web_base: str) -> dict[str, Any]:
    tokens_in, tokens_out, usd = spend_of(detail)
    return {
        "item": _plain(detail.item),
        "links": [{"label": link.label, "url": link.url} for link in item_links(detail, web_base)],
        "spend": {"input_tokens": tokens_in, "output_tokens": tokens_out, "usd": usd},
        "plan": latest_document(detail, "plan"),
        "review": latest_document(detail, "review"),
        "approvals": _plain(list(detail.approvals)),
        "timeline": [entry.as_json() for entry in entries],
    }


def _row(table: Table, *cells: str | Text) -> None:
    """Add a row whose strings are plain text: store data is never parsed as rich markup."""
    table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in cells))


def print_overview(console: Console, overview: Overview) -> None:
    items = Table(title="Work items by state")
    items.add_column("Repository")
    items.add_column("State")
    items.add_column("Count", justify="right")
    for repo in overview.repos:
        for state, count in overview.counts_for(repo).items():
            _row(items, repo, state, str(count))
    console.print(items if overview.repos else Text("No work items yet."))
    for (repo, base), entries in overview.queues().items():
        queue = Table(title=Text(f"Merge queue {repo} → {base}"))
        for column in ("#", "PR", "State", "Gates", "Head", "Note"):
            queue.add_column(column)
        for e in entries:
            gates = ", ".join(f"{g}: {s}" for g, s in e.gates.items()) or "-"
            _row(
                queue,
                str(e.position),
                f"#{e.pr_number}",
                e.state,
                gates,
                e.head_sha[:10],
                e.reason or "",
            )
        console.print(queue)
    if not overview.queue:
        console.print(Text("Every merge queue is empty."))
    locks = Table(title="Locks held")
    for column in ("Repository", "Subsystem", "Holder", "Epoch", "Expires"):
        locks.add_column(column)
    for lock in overview.locks:
        expires = lock.expires_at.strftime("%H:%M:%S") if lock.expires_at else ""
        _row(locks, lock.repo, lock.subsystem, lock.holder, str(lock.epoch), expires)
    console.print(locks if overview.locks else Text("No locks held."))
    if overview.waiters:
        waiters = Table(title="Waiting for locks")
        for column in ("Repository", "Subsystem", "Waiter", "Waiting"):
            waiters.add_column(column)
        for w in overview.waiters:
            _row(waiters, w.repo, w.subsystem, w.holder, f"{w.waited_seconds:.0f} s")
        console.print(waiters)
    budget = f" of ${overview.budget_usd:.2f}" if overview.budget_usd is not None else ""
    spend = Table(title=f"Agent spend today: ${overview.spend_usd:.2f}{budget}")
    for column in ("Role", "Model", "Steps", "In tokens", "Out tokens", "USD"):
        spend.add_column(column)
    for s in overview.spend:
        _row(
            spend,
            s.role,
            s.model,
            str(s.steps),
            str(s.input_tokens),
            str(s.output_tokens),
            f"{s.cost_usd:.4f}",
        )
    console.print(spend)


def print_timeline(
    console: Console, detail: WorkItemDetail, entries: list[Entry], web_base: str
) -> None:
    item = detail.item
    tokens_in, tokens_out, usd = spend_of(detail)
    console.print(Text(f"{item.ref}: {item.title}", style="bold"))
    console.print(
        Text(f"state {item.state} · {tokens_in} in / {tokens_out} out tokens · ${usd:.4f}")
    )
    for link in item_links(detail, web_base):
        console.print(Text(f"{link.label}: {link.url}"))
    for name in ("plan", "review"):
        document = latest_document(detail, name)
        if document is not None:
            console.print(Text(f"{name}:", style="bold"))
            for key, value in document.items():
                console.print(Text(f"  {key}: {value}"))
    table = Table(title="Timeline")
    for column in ("When", "What", "Detail"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        lines = [entry.message] if entry.message else []
        lines.extend(f"{label}: {text}" for label, text in entry.facts)
        lines.extend(
            f"tool {call.name}{' (refused)' if call.refused else ''}: "
            + call.result[:200].replace("\n", " ⏎ ")
            for call in entry.tool_calls
        )
        _row(
            table,
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            Text(f"[{entry.category.value}] {entry.title}"),
            Text("\n".join(lines)),
        )
    console.print(table)
