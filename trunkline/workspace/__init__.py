"""Git workspace: mirror clones, per-work-item worktrees, integration commits (GitPython)."""
