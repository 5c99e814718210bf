"""What the agent performers hand on from command output and change requests is redacted:
a failed self-check's summary (sticky comments, timeline, executor feedback) and every
feedback text given to a model."""

from __future__ import annotations

from trunkline.agents.redaction import REDACTED, Redactor
from trunkline.agents.sandbox import CommandResult
from trunkline.pipeline.agent_performers import feedback_findings, self_check_failure

SECRET = "whsec-the-webhook-secret-value"  # a configured secret no token pattern matches
REDACTOR = Redactor.of([SECRET])
KEY_TAIL = "bGluZSB0d28gb2YgdGhlIGtleSBib2R5IGhlcmU=\n-----END RSA PRIVATE KEY-----"


def test_a_failed_self_checks_summary_is_redacted() -> None:
    output = "\n".join(
        [*(f"line {n}" for n in range(30)), f"cfg webhook_secret={SECRET}", KEY_TAIL, "FAILED"]
    )
    outcome = CommandResult(("python3", "leak.py"), 1, output, False, False)
    summary = self_check_failure("python3 leak.py", outcome, REDACTOR)
    assert summary.startswith("`python3 leak.py` failed (exit code 1):")
    assert SECRET not in summary
    assert "bGluZSB0d28" not in summary
    assert "PRIVATE KEY" not in summary
    assert REDACTED in summary
    assert "FAILED" in summary
    assert "line 29" in summary
    assert "line 10" not in summary  # the last 20 lines only


def test_feedback_to_the_executor_is_redacted() -> None:
    findings = feedback_findings(
        (f"CI failed: GH_TOKEN={SECRET}", "ghs_" + "ab-_" * 9, "  ", "rename foo"),
        REDACTOR,
    )
    messages = [finding.message for finding in findings]
    assert messages == [f"CI failed: GH_TOKEN={REDACTED}", REDACTED, "rename foo"]
