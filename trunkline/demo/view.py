"""The demo in the terminal: a live view while it runs, then a summary and one timeline.

Rendering is pure (progress and facts in, rich renderables out); `LiveView` owns the rich
`Live` display and writes to its console.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from trunkline.demo.runner import DemoProgress, DemoResult
from trunkline.demo.scenario import BY_NUMBER, REPO
from trunkline.pipeline.model import WorkItem

_STATE_STYLE = {
    "merged": "bold green",
    "escalated": "bold yellow",
    "refused": "magenta",
    "failed": "bold red",
    "cancelled": "red",
    "queued_for_merge": "cyan",
    "waiting_for_locks": "yellow",
}


def _state(value: str) -> Text:
    return Text(value, style=_STATE_STYLE.get(value, "white"))


def _item_row(number: int, item: WorkItem | None) -> list[str | Text]:
    issue = BY_NUMBER[number]
    if item is None:
        return [f"#{number}", issue.title, Text("labeled", style="dim"), "", "", "", "", ""]
    risk = item.risk.level if item.risk else ""
    subsystems = ", ".join(item.risk.subsystems) if item.risk else ""
    return [
        f"#{number}",
        issue.title,
        _state(item.state.value),
        subsystems,
        risk,
        f"#{item.pr}" if item.pr else "",
        str(item.review_rounds),
        f"${item.spend.usd:.3f}",
    ]


def progress_table(progress: DemoProgress) -> Group:
    table = Table(title=f"trunkline demo: {REPO}   {progress.elapsed:5.1f}s", expand=True)
    for column in ("issue", "title", "state", "subsystems", "risk", "PR", "rounds", "spend"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=36)
    for number in sorted(BY_NUMBER):
        table.add_row(*_item_row(number, progress.items.get(number)))
    locks = ", ".join(f"{subsystem}: {holder}" for subsystem, holder in progress.locks) or "none"
    lines = [Text(f"locks held: {locks}")]
    if progress.dashboard_url and not progress.finished:
        lines.append(Text(f"dashboard (while the demo runs): {progress.dashboard_url}"))
    if progress.bot_starts > 1:
        lines.append(Text(f"bot restarts: {progress.bot_starts - 1}", style="yellow"))
    lines += [Text(line, style="dim") for line in progress.log[-6:]]
    return Group(table, *lines)


def summary_table(result: DemoResult) -> Table:
    table = Table(title="Summary")
    for column in ("issue", "state", "PR", "risk", "subsystems", "merged", "approved by",
                   "rounds", "spend"):  # fmt: skip
        table.add_column(column, no_wrap=True)
    for item in result.items:
        table.add_row(
            f"#{item.issue}",
            _state(item.state),
            f"#{item.pr}" if item.pr else "",
            item.risk or "",
            ", ".join(item.subsystems),
            (item.merged_sha or "")[:8],
            ", ".join(item.approved_by),
            str(item.review_rounds),
            f"${item.spend_usd:.3f}",
        )
    return table


def shows(result: DemoResult) -> Text:
    lines = [f"#{item.issue} {BY_NUMBER[item.issue].shows}" for item in result.items]
    return Text("\n".join(lines), style="dim")


def timeline_table(result: DemoResult) -> Table | None:
    """The transitions and agent runs of one item, oldest first, seconds from its start."""
    if result.timeline is None:
        return None
    detail, _ = result.timeline
    rows: list[tuple[Any, str, str]] = []
    for event in detail.events:
        if event.kind == "transition":
            rows.append((event.created_at, f"{event.from_state or '-'} -> {event.to_state}",
                         event.message))  # fmt: skip
    for run in detail.runs:
        verdict = f", {run.verdict}" if run.verdict else ""
        rows.append((run.started_at, f"agent: {run.role}",
                     f"{run.state}{verdict}; {run.input_tokens + run.output_tokens} tokens, "
                     f"${run.cost_usd:.4f}"))  # fmt: skip
    rows.sort(key=lambda row: row[0])
    start = rows[0][0] if rows else None
    table = Table(title=f"Timeline of {detail.item.ref}: {detail.item.title}")
    table.add_column("t", justify="right", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for at, step, text in rows:
        offset = (at - start).total_seconds() if start is not None else 0.0
        table.add_row(f"{offset:5.1f}s", step, text.splitlines()[0] if text else "")
    return table


def facts_panel(result: DemoResult) -> Panel:
    main = result.main
    lines = [
        f"main {main.sha[:10]}: {'linear' if main.linear else 'NOT linear'}, "
        f"{main.commits} commits since the seed, {main.untested_commits} untested",
        "most lock holders at once: "
        + ", ".join(f"{name} {count}" for name, count in result.locks.max_holders.items()),
        "held at the same time: "
        + (", ".join(f"{a} + {b}" for a, b in result.locks.overlaps) or "nothing"),
        f"wall time {result.wall_seconds:.1f}s"
        + (f", bot killed {result.bot_kills}x and restarted" if result.bot_kills else ""),
    ]
    lines += [f"problem: {problem}" for problem in result.problems + list(main.problems)]
    return Panel("\n".join(lines), title="Facts (read from git, check runs and the lock history)")


def print_result(console: Console, result: DemoResult) -> None:
    console.print(summary_table(result))
    console.print(shows(result))
    console.print(facts_panel(result))
    timeline = timeline_table(result)
    if timeline is not None:
        console.print(timeline)
    console.print(
        Text(
            f"The full timeline of any item: trunkline timeline {REPO}#N (with --data and "
            "TRUNKLINE_DATA_DIR=DATA/bot); the dashboard: trunkline dashboard.",
            style="dim",
        )
    )


class LiveView:
    """A `DemoObserver` that redraws the progress table in place."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = Live(console=console, refresh_per_second=4, transient=False)

    def update(self, progress: DemoProgress) -> None:
        self._live.update(progress_table(progress))

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Any:
        return self._live.__exit__(kind, error, trace)
