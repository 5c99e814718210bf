"""Parsers of `git diff -z` output (`--name-status -M` and `--numstat -M`).

Pure; performs no I/O. Input is the raw bytes git printed; paths are decoded with
`surrogateescape`, so any byte sequence survives. Malformed input raises `ValueError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from trunkline.workspace.model import ChangeKind, FileChange

_KINDS = {
    "A": ChangeKind.ADDED,
    "M": ChangeKind.MODIFIED,
    "D": ChangeKind.DELETED,
    "R": ChangeKind.RENAMED,
    "C": ChangeKind.COPIED,
    "T": ChangeKind.TYPE_CHANGED,
}


@dataclass(frozen=True)
class NameStatus:
    kind: ChangeKind
    path: str
    old_path: str | None
    similarity: int | None


@dataclass(frozen=True)
class NumStat:
    path: str
    old_path: str | None
    added: int | None
    deleted: int | None


def _tokens(raw: bytes) -> list[str]:
    if not raw:
        return []
    if not raw.endswith(b"\0"):
        raise ValueError("git -z output must end with NUL")
    return [os.fsdecode(part) for part in raw[:-1].split(b"\0")]


def parse_name_status(raw: bytes) -> list[NameStatus]:
    """Parse `git diff -z --name-status [-M]`."""
    tokens = _tokens(raw)
    result: list[NameStatus] = []
    index = 0
    while index < len(tokens):
        status = tokens[index]
        if not status or status[0] not in _KINDS:
            raise ValueError(f"unknown diff status {status!r}")
        kind = _KINDS[status[0]]
        score = int(status[1:]) if len(status) > 1 else None
        if kind in (ChangeKind.RENAMED, ChangeKind.COPIED):
            if index + 2 >= len(tokens):
                raise ValueError("rename/copy record lacks its two paths")
            result.append(NameStatus(kind, tokens[index + 2], tokens[index + 1], score))
            index += 3
        else:
            if index + 1 >= len(tokens):
                raise ValueError("diff record lacks its path")
            result.append(NameStatus(kind, tokens[index + 1], None, score))
            index += 2
    return result


def _count(text: str) -> int | None:
    if text == "-":
        return None
    if not text.isdigit():
        raise ValueError(f"bad line count {text!r}")
    return int(text)


def parse_numstat(raw: bytes) -> list[NumStat]:
    """Parse `git diff -z --numstat [-M]` ('-' counts, i.e. binary files, become None)."""
    tokens = _tokens(raw)
    result: list[NumStat] = []
    index = 0
    while index < len(tokens):
        fields = tokens[index].split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"bad numstat record {tokens[index]!r}")
        added, deleted, path = _count(fields[0]), _count(fields[1]), fields[2]
        if path:
            result.append(NumStat(path, None, added, deleted))
            index += 1
        else:
            if index + 2 >= len(tokens):
                raise ValueError("rename numstat record lacks its two paths")
            result.append(NumStat(tokens[index + 2], tokens[index + 1], added, deleted))
            index += 3
    return result


def combine(name_status: list[NameStatus], numstat: list[NumStat]) -> tuple[FileChange, ...]:
    """Join the two listings by (old path, new path), in git's order."""
    counts = {(stat.old_path, stat.path): stat for stat in numstat}
    changes: list[FileChange] = []
    for entry in name_status:
        stat = counts.get((entry.old_path, entry.path))
        if stat is None:
            raise ValueError(f"numstat has no record for {entry.path!r}")
        changes.append(
            FileChange(
                path=entry.path,
                kind=entry.kind,
                old_path=entry.old_path,
                added_lines=stat.added,
                deleted_lines=stat.deleted,
                similarity=entry.similarity,
            )
        )
    return tuple(changes)
