"""Map the policy file's `queue:` section onto the engine's `QueueConfig`.

Pure; performs no I/O. The engine's `QueueConfig` refuses values it cannot run with
(`QueueConfigError`, a `ConfigurationError`, with a message naming the policy key), so a
policy without required checks is reported instead of silently running a different queue.
A required check is a name, or `{name, app}` (only that App's check run counts).
"""

from __future__ import annotations

from trunkline.policies.model import Policy, RequiredCheck
from trunkline.policies.model import Queue as PolicyQueue
from trunkline.queue.model import MergeMethod, Priority, QueueConfig, QueueConfigError


def queue_config_from_policy(queue: PolicyQueue) -> QueueConfig:
    """The engine config of a policy's `queue:` section. Raises `QueueConfigError`."""
    if not queue.required_checks:
        raise QueueConfigError(
            "queue.required_checks is empty in the policy: the merge queue only "
            "fast-forwards to commits whose required checks passed, so name at least one "
            "check (for example `required_checks: [ci]`)"
        )
    if queue.merge_method.value == "rebase":
        # A rebase puts each of the PR's commits on the base; only the last one is tested.
        raise QueueConfigError(
            "queue.merge_method is rebase in the policy: the base would get every commit of "
            "the PR, and only the last one is tested; use merge or squash"
        )
    names = tuple(c.name if isinstance(c, RequiredCheck) else c for c in queue.required_checks)
    apps = tuple((c.name, c.app) for c in queue.required_checks if isinstance(c, RequiredCheck))
    return QueueConfig(
        base=queue.base,
        required_checks=names,
        check_apps=apps,
        merge_method=MergeMethod(queue.merge_method.value),
        check_timeout=queue.check_timeout,
        check_start_timeout=queue.check_start_timeout,
        retry_on_timeout=queue.retry_on_timeout,
        batch_size=queue.batch_size,
        parallel_checks=queue.parallel_checks,
        flake_retries=queue.flake_retries,
        batch_wait=queue.batch_wait,
        pretest=queue.pretest,
        speculation_floor=queue.speculation_floor,
        cleared_batch_size=queue.cleared_batch_size,
        merge_isolated=queue.merge_isolated,
        isolation_slots=queue.isolation_slots,
        parallel_bisection=queue.parallel_bisection,
        bisection_holds_stack=queue.bisection_holds_stack,
    )


def queue_config_of(policy: Policy) -> QueueConfig:
    return queue_config_from_policy(policy.queue)


def default_priority(policy: Policy) -> Priority:
    """The priority of a new queue entry (`queue.default_priority`)."""
    return Priority(policy.queue.default_priority.value)
