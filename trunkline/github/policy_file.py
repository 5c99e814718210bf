"""Read a repository's policy file through the GitHub port.

Performs I/O through the given port only. The bot reads `.github/trunkline.yml` from a base
branch (never from a PR's head, which could loosen its own rules).
"""

from __future__ import annotations

from trunkline.github.port import GitHubPort
from trunkline.policies.loader import DEFAULT_POLICY_PATH, load_policy
from trunkline.policies.model import Policy


def read_policy(github: GitHubPort, repo: str, ref: str) -> Policy | tuple[str, ...]:
    """The policy at `ref` (the default policy when the file is missing), or its errors."""
    content = github.get_file(repo, DEFAULT_POLICY_PATH, ref)
    if content is None:
        return Policy()
    loaded = load_policy(content.text, DEFAULT_POLICY_PATH)
    if isinstance(loaded, Policy):
        return loaded
    return tuple(str(error) for error in loaded)
