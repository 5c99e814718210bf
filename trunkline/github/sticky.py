"""Sticky comments: one comment per (item, key), found by a hidden HTML marker.

Pure; performs no I/O. The marker is an HTML comment, invisible in GitHub's rendering. Only
comments written by the bot itself count, so a human quoting the marker cannot hijack it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from trunkline.github.model import Comment

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def marker(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"sticky comment keys are [A-Za-z0-9_.:-]{{1,100}}, got {key!r}")
    return f"<!-- trunkline:sticky:{key} -->"


def sticky_body(key: str, body: str) -> str:
    """The full comment body: the marker line, then `body`."""
    return f"{marker(key)}\n{body}"


def find_sticky(comments: Iterable[Comment], key: str, bot_login: str | None) -> Comment | None:
    """The oldest comment carrying `key`'s marker written by `bot_login` (any author if None)."""
    tag = marker(key)
    for comment in comments:
        if bot_login is not None and comment.author.login != bot_login:
            continue
        if comment.body.startswith(tag + "\n") or comment.body == tag:
            return comment
    return None
