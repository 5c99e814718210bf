"""The simulated people of the demo: the maintainer and the outside contributor.

Performs HTTP I/O through `ForgeClient`, as the people themselves would (their own tokens);
they see only what the forge shows (open pull requests and their check runs), never the
bot's store. `People.start` labels the seeded issues; `People.step` looks at the open pull
requests: once the reviewer agent approved a head (`trunkline/review` success) and the
approval gate holds it (`trunkline/approval` failure), the outside contributor approves
first (a review, recorded but not counted, and `/trunkline approve`, refused), then the
maintainer approves that head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from trunkline.demo.forge_client import ForgeClient
from trunkline.demo.scenario import DISPATCH_LABEL, ISSUES, OUTSIDER, OWNER, REPO

#: How long the maintainer waits for the bot's answer to the outsider before approving anyway.
OUTSIDER_ANSWER_WAIT = 5.0


@dataclass
class GatedPull:
    pr: int
    sha: str
    outsider_at: float | None = None
    maintainer_approved: bool = False


@dataclass
class People:
    forge: ForgeClient
    bot_login: str
    log: list[str] = field(default_factory=list)
    gated: dict[int, GatedPull] = field(default_factory=dict)
    settled: set[tuple[int, str]] = field(default_factory=set)  # (pr, sha) needing nobody

    def start(self) -> None:
        """Every seeded issue gets the dispatch label from the person the scenario names."""
        for issue in ISSUES:
            status = self.forge.add_label(REPO, issue.number, DISPATCH_LABEL, issue.labeled_by)
            note = "" if status < 300 else f" (the forge answered {status})"
            self.log.append(f"@{issue.labeled_by} labeled #{issue.number} {DISPATCH_LABEL!r}{note}")

    def step(self) -> None:
        for pull in self.forge.get(f"/repos/{REPO}/pulls?state=open&per_page=100"):
            self._consider(int(pull["number"]), str(pull["head"]["sha"]))

    def _consider(self, pr: int, sha: str) -> None:
        if (pr, sha) in self.settled:
            return
        gated = self.gated.get(pr)
        if gated is not None and gated.sha != sha:
            gated = None  # a new head: approvals of the old one do not count
        if gated is None:
            runs = {run["name"]: run for run in self.forge.check_runs(REPO, sha)}
            review = runs.get("trunkline/review", {}).get("conclusion")
            approval = runs.get("trunkline/approval", {}).get("conclusion")
            if approval == "success":
                self.settled.add((pr, sha))  # no human approval needed (or already given)
            if review != "success" or approval != "failure":
                return
            gated = self.gated[pr] = GatedPull(pr, sha)
        if gated.outsider_at is None:
            self.forge.approve(REPO, pr, sha, OUTSIDER, "LGTM, ship it!")
            self.forge.comment(REPO, pr, "/trunkline approve", OUTSIDER)
            gated.outsider_at = time.monotonic()
            self.log.append(f"@{OUTSIDER} approved PR #{pr} and commented /trunkline approve")
            return
        if gated.maintainer_approved:
            return
        answered = any(
            comment["user"]["login"] == self.bot_login and f"@{OUTSIDER}" in comment["body"]
            for comment in self.forge.issue_comments(REPO, pr)
        )
        if not answered and time.monotonic() - gated.outsider_at < OUTSIDER_ANSWER_WAIT:
            return
        self.forge.approve(REPO, pr, sha, OWNER, "Reviewed the CI change: approved.")
        gated.maintainer_approved = True
        self.settled.add((pr, sha))
        self.log.append(f"@{OWNER} approved PR #{pr} at {sha[:10]}")
