"""The rate-limit decision table and error mapping (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.errors import RetryableError, TerminalError
from trunkline.github.errors import (
    AuthenticationError,
    ConflictError,
    GitHubUnavailableError,
    NonFastForwardError,
    NotFoundError,
    NotMergeableError,
    PermissionDeniedError,
    RefExistsError,
    StaleMergeShaError,
    ValidationFailedError,
)
from trunkline.github.ratelimit import (
    GiveUp,
    RateLimitPolicy,
    Wait,
    decide,
    wait_before_next_request,
)
from trunkline.github.responses import error_for, message_of, next_page

POLICY = RateLimitPolicy()
NOW = 1_800_000_000.0
SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes."


@pytest.mark.parametrize(
    ("status", "headers", "message", "attempt", "expected"),
    [
        # retry-after is honoured exactly for primary limits
        (429, {"retry-after": "7"}, "", 0, Wait(7.0, "retry-after")),
        (403, {"Retry-After": "30"}, "API rate limit exceeded", 1, Wait(30.0, "retry-after")),
        # remaining 0: wait until the reset (plus a second of slack)
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 120))},
            "API rate limit exceeded for installation.",
            0,
            Wait(121.0, "primary limit reset"),
        ),
        # a reset already past: just the slack
        (
            429,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW - 5))},
            "",
            0,
            Wait(1.0, "primary limit reset"),
        ),
        # secondary: at least a minute, doubling, never below retry-after
        (403, {}, SECONDARY, 0, Wait(60.0, "secondary limit backoff")),
        (403, {"retry-after": "1"}, SECONDARY, 1, Wait(120.0, "secondary limit backoff")),
        (403, {"retry-after": "300"}, SECONDARY, 0, Wait(300.0, "secondary limit backoff")),
        (429, {}, "", 2, Wait(240.0, "secondary limit backoff")),
        # give up after the bound, or when the wait is too long to block a worker
        (403, {}, SECONDARY, 4, GiveUp(960.0, "secondary limit backoff")),
        (429, {"retry-after": "3600"}, "", 0, GiveUp(3600.0, "retry-after")),
        # not rate limits at all
        (403, {}, "Resource not accessible by integration", 0, None),
        (404, {"retry-after": "5"}, "Not Found", 0, None),
        (500, {}, "", 0, None),
    ],
)
def test_decide(
    status: int,
    headers: dict[str, str],
    message: str,
    attempt: int,
    expected: Wait | GiveUp | None,
) -> None:
    assert decide(status, headers, message, attempt, NOW, POLICY) == expected


def test_successful_response_with_nothing_remaining_waits_for_the_reset() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 10))}
    assert wait_before_next_request(headers, NOW, POLICY) == 11.0
    assert wait_before_next_request({"x-ratelimit-remaining": "4"}, NOW, POLICY) == 0.0
    assert wait_before_next_request({}, NOW, POLICY) == 0.0


@pytest.mark.parametrize(
    ("operation", "status", "message", "error"),
    [
        ("get_issue", 401, "Bad credentials", AuthenticationError),
        ("get_issue", 403, "Resource not accessible by integration", PermissionDeniedError),
        ("get_issue", 404, "Not Found", NotFoundError),
        ("merge_pull", 405, "Pull Request is not mergeable", NotMergeableError),
        ("merge_pull", 409, "Head branch was modified.", StaleMergeShaError),
        ("create_ref", 409, "Git Repository is empty.", ConflictError),
        ("update_ref", 422, "Update is not a fast forward", NonFastForwardError),
        ("update_ref", 422, "Reference does not exist", NotFoundError),
        ("create_ref", 422, "Reference already exists", RefExistsError),
        (
            "create_pull",
            422,
            "Validation Failed; No commits between main and x",
            ValidationFailedError,
        ),
        ("get_issue", 502, "Server Error", GitHubUnavailableError),
    ],
)
def test_error_for(operation: str, status: int, message: str, error: type[Exception]) -> None:
    raised = error_for(operation, status, message)
    assert type(raised) is error
    assert str(status) in str(raised)
    retryable = isinstance(raised, RetryableError)
    assert retryable != isinstance(raised, TerminalError)
    assert retryable == (status >= 500)


def test_message_of_includes_validation_details() -> None:
    data = {"message": "Validation Failed", "errors": [{"message": "No commits between"}, "x"]}
    assert message_of(data) == "Validation Failed; No commits between; x"
    assert message_of(None) == ""


def test_next_page() -> None:
    link = (
        '<https://api.github.com/repositories/1/issues?page=2>; rel="next", '
        '<https://api.github.com/repositories/1/issues?page=5>; rel="last"'
    )
    assert next_page({"link": link}) == "https://api.github.com/repositories/1/issues?page=2"
    assert next_page({"link": '<https://x/y?page=1>; rel="prev"'}) is None
    assert next_page({}) is None


@given(
    status=st.sampled_from([403, 429]),
    retry_after=st.one_of(st.none(), st.integers(0, 10_000)),
    secondary=st.booleans(),
    attempt=st.integers(0, 10),
)
def test_never_sooner_than_retry_after_and_secondary_waits_at_least_a_minute(
    status: int, retry_after: int | None, secondary: bool, attempt: int
) -> None:
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    message = SECONDARY if secondary else "API rate limit exceeded"
    decision = decide(status, headers, message, attempt, NOW, POLICY)
    assert decision is not None
    waited = decision.seconds if isinstance(decision, Wait) else decision.retry_after
    if retry_after is not None:
        assert waited >= retry_after
    if secondary:
        assert waited >= 60.0
    if attempt >= POLICY.max_attempts:
        assert isinstance(decision, GiveUp)
