"""A lost `issues.labeled` webhook on the forge over HTTP: the production composition's
label reconciler (`pipeline_label_reconciler`) starts the item, once."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import httpx
from pipeline_forge_rig import MODEL, SANDBOX_PATH

from trunkline.bot.events import parse_payload
from trunkline.bot.intake import decide_intake
from trunkline.bot.router import RoutedEvent
from trunkline.bot.service import build_service
from trunkline.clock import FakeClock, SystemClock
from trunkline.forge.testing import WebhookReceiver, default_spec, running_forge
from trunkline.github.port import GitHubPort
from trunkline.pipeline.composition import DispatchWiring, configure_dispatch
from trunkline.pipeline.states import WorkState
from trunkline.queue.service import QueueService
from trunkline.settings import Settings
from trunkline.store.deliveries import record_batch
from trunkline.store.testing import migrated_engine

REPO = "alice/demo"


def test_the_reconciler_starts_an_issue_whose_labeled_webhook_was_dropped(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    (source / ".github").mkdir(parents=True)
    (source / "README.md").write_text("# demo\n")
    (source / ".github" / "trunkline.yml").write_text("version: 1\n")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"responses": []}))  # no agent runs here
    settings = Settings(
        data_dir=tmp_path / "data",
        agent_provider="scripted",
        agent_script=script,
        agent_model=MODEL,
        sandbox_path=SANDBOX_PATH,
    )
    with (
        WebhookReceiver() as hooks,
        running_forge(
            default_spec(source, webhook_url=hooks.url), data_dir=tmp_path / "forge"
        ) as forge,
    ):
        now = datetime.fromisoformat(forge.admin("GET", "health")["now"])
        http = httpx.Client(timeout=30)
        engine = migrated_engine(f"sqlite:///{tmp_path / 'bot.db'}")
        try:
            github = forge.app_clients(FakeClock(current=now), http).for_installation(
                forge.installation_id
            )

            def github_for(installation: int | None) -> GitHubPort:
                assert installation == forge.installation_id
                return github

            wired: list[DispatchWiring] = []
            service = build_service(
                settings,
                engine=engine,
                configure=lambda s: wired.append(
                    configure_dispatch(
                        s,
                        queue=QueueService(engine, SystemClock()),
                        github_for=github_for,
                        token_for=lambda installation: None,
                        repository_url=lambda repo: f"{forge.base_url}/{repo}.git",
                    )
                ),
            )
            pipeline = wired[0].pipeline
            alice = {"Authorization": f"token {forge.token('alice')}"}
            opened = httpx.post(
                f"{forge.api_url}/repos/{REPO}/issues", json={"title": "Fix it"}, headers=alice
            )
            opened.raise_for_status()
            number = int(opened.json()["number"])
            forge.wait_idle()
            # the bot stored that delivery (the intake path): how it knows the repository
            secret = (forge.webhook_secret or "").encode()
            for hook in hooks.snapshot():
                headers = {
                    "x-github-delivery": hook.delivery,
                    "x-github-event": hook.event,
                    "x-hub-signature-256": hook.signature or "",
                }
                stored = decide_intake(secret, headers, hook.body, lambda: "x").delivery
                assert stored is not None
                with engine.begin() as conn:
                    record_batch(conn, [stored])
            received = len(hooks.snapshot())

            # the bot is down: the forge drops the `labeled` delivery
            forge.admin("POST", "webhook-faults", {"mode": "drop", "count": 1})
            labeled = httpx.post(
                f"{forge.api_url}/repos/{REPO}/issues/{number}/labels",
                json={"labels": ["agent"]},
                headers=alice,
            )
            labeled.raise_for_status()
            forge.wait_idle()
            assert len(hooks.snapshot()) == received
            dropped = [d for d in forge.deliveries() if d["status"] == "dropped"]
            assert [d["event"] for d in dropped] == ["issues"]
            assert pipeline.item(REPO, number) is None

            reconcile = service.periodic.tasks["pipeline_label_reconciler"].function
            reconcile()

            item = pipeline.item(REPO, number)
            assert item is not None
            assert (item.state, item.requester, item.run) == (WorkState.PLANNING, "alice", 1)
            reconcile()
            # the dropped delivery, redelivered late, decides to "no change"
            forge.admin("POST", f"deliveries/{dropped[0]['id']}/redeliver")
            forge.wait_idle()
            late = hooks.snapshot()[-1]
            parsed = parse_payload("issues", late.payload())
            assert parsed is not None
            assert late.payload()["action"] == "labeled"
            service.router.dispatch(
                RoutedEvent(late.delivery, "issues", "labeled", parsed, late.payload())
            )
            again = pipeline.item(REPO, number)
            assert again is not None
            assert (again.version, again.run) == (item.version, 1)
        finally:
            http.close()
            engine.dispose()
