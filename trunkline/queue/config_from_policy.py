"""Map the policy file's `queue:` section onto the engine's `QueueConfig`.

Pure; performs no I/O. The engine's `QueueConfig` refuses values it cannot run with
(`QueueConfigError`, a `ConfigurationError`, with a message naming the policy key), so a
policy without required checks is reported instead of silently running a different queue.
The policy has no `retry_on_timeout` key, so it is 0.
"""

from __future__ import annotations

from trunkline.policies.model import Policy
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
    if queue.batch_size > 1:
        # The engine can batch, but the runner still builds one integration commit per PR,
        # chained; fast-forwarding to the last would put the untested ones before it on the
        # base's first-parent history. Speculation (parallel_checks) has no such commits.
        raise QueueConfigError(
            f"queue.batch_size is {queue.batch_size} in the policy: batches are not available "
            "yet (a batch must become one integration commit on the base, and the runner "
            "does not build those yet); use batch_size: 1 with parallel_checks for throughput"
        )
    return QueueConfig(
        base=queue.base,
        required_checks=tuple(queue.required_checks),
        merge_method=MergeMethod(queue.merge_method.value),
        check_timeout=queue.check_timeout,
        check_start_timeout=queue.check_start_timeout,
        retry_on_timeout=0,
        batch_size=queue.batch_size,
        parallel_checks=queue.parallel_checks,
        flake_retries=queue.flake_retries,
        batch_wait=queue.batch_wait,
    )


def queue_config_of(policy: Policy) -> QueueConfig:
    return queue_config_from_policy(policy.queue)


def default_priority(policy: Policy) -> Priority:
    """The priority of a new queue entry (`queue.default_priority`)."""
    return Priority(policy.queue.default_priority.value)
