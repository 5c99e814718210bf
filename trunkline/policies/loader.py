"""Policy file text -> `Policy`, or every problem found, each at its file:line:column.

Pure; performs no I/O. `load_policy` never raises on user input: YAML syntax errors, duplicate
keys, unsupported tags, alias bombs, unknown keys, wrong types, bad patterns, bad durations,
negative limits and references to unknown risk levels all come back as `PolicyError`s,
sorted by position. The YAML is composed into a node tree (PyYAML `SafeLoader`), converted
to plain data while remembering which node each key path came from, validated with
pydantic, and each validation error's `loc` is mapped back to its node's line and column
(1-based). Unknown keys and missing keys point at a key; everything else at the value.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trunkline.policies.model import DEFER_CROSS_CHECKS, Policy, policy_problems

DEFAULT_POLICY_PATH = ".github/trunkline.yml"

# Limits that keep hostile input cheap: the text size, the number of aliases in the
# document, and the number of values after expanding aliases (a "billion laughs" document
# stays small as text and as a node tree, but explodes when expanded).
MAX_POLICY_CHARS = 1_000_000
MAX_ALIASES = 200
MAX_EXPANDED_VALUES = 100_000

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[str | int, ...]

_KINDS: dict[type, str] = {list: "a list", str: "a string", int: "a number", float: "a number"}


@dataclass(frozen=True, order=True)
class PolicyError:
    """One problem in a policy file; `line` and `column` are 1-based."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class _TooComplexError(Exception):
    def __init__(self, message: str, node: Node) -> None:
        super().__init__(message)
        self.node = node


class _CappedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses documents with too many aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_count = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.MarkedYAMLError(
                    problem=f"more than {MAX_ALIASES} aliases; policy files need far fewer",
                    problem_mark=event.start_mark,
                )
        return super().compose_node(parent, index)


@dataclass
class _Document:
    """Plain data from the YAML tree plus the nodes each key path came from."""

    values: dict[Loc, Node]
    keys: dict[Loc, Node]
    problems: list[tuple[Node, str]]
    expanded: int = 0


class _Converter:
    def __init__(self) -> None:
        self.document = _Document(values={}, keys={}, problems=[])
        self._constructor = yaml.constructor.SafeConstructor()
        self._active: set[int] = set()

    def convert(self, node: Node, loc: Loc) -> object:
        doc = self.document
        doc.expanded += 1
        if doc.expanded > MAX_EXPANDED_VALUES:
            raise _TooComplexError(
                f"the document expands to more than {MAX_EXPANDED_VALUES} values "
                "(aliases nest too deeply)",
                node,
            )
        doc.values.setdefault(loc, node)
        if id(node) in self._active:
            doc.problems.append((node, "an alias refers to a value that contains itself"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, loc)
            if isinstance(node, SequenceNode):
                return self._sequence(node, loc)
            return self._scalar(node)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: MappingNode, loc: Loc) -> object:
        if node.tag != _MAP_TAG:
            self.document.problems.append((node, f"unsupported YAML tag {node.tag!r}"))
            return None
        result: dict[str, object] = {}
        first_seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.document.problems.append((key_node, "a key must be a plain string"))
                continue
            if key_node.tag == _MERGE_TAG:
                self.document.problems.append(
                    (key_node, "YAML merge keys (<<) are not supported; repeat the keys")
                )
                continue
            key = str(key_node.value)
            if key in first_seen:
                first = first_seen[key].start_mark
                self.document.problems.append(
                    (
                        key_node,
                        f"duplicate key {key!r} (first defined at line {first.line + 1}, "
                        f"column {first.column + 1})",
                    )
                )
                continue
            first_seen[key] = key_node
            self.document.keys.setdefault((*loc, key), key_node)
            result[key] = self.convert(value_node, (*loc, key))
        return result

    def _sequence(self, node: SequenceNode, loc: Loc) -> object:
        if node.tag != _SEQ_TAG:
            self.document.problems.append((node, f"unsupported YAML tag {node.tag!r}"))
            return None
        return [self.convert(item, (*loc, index)) for index, item in enumerate(node.value)]

    def _scalar(self, node: Node) -> object:
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception as error:  # any constructor failure is a problem with this value
            reason = getattr(error, "problem", None) or str(error) or type(error).__name__
            self.document.problems.append((node, f"cannot read this value: {reason}"))
            return None


def load_policy(text: str, filename: str = DEFAULT_POLICY_PATH) -> Policy | list[PolicyError]:
    """Parse and validate policy text; never raises on user input."""
    try:
        return _load(text, filename)
    except RecursionError:
        return [PolicyError(filename, 1, 1, "the document nests too deeply")]
    except Exception as error:  # the boundary: user input must never crash the caller
        return [PolicyError(filename, 1, 1, f"cannot read the policy: {error}")]


def load_policy_bytes(
    data: bytes, filename: str = DEFAULT_POLICY_PATH
) -> Policy | list[PolicyError]:
    """Like `load_policy` for raw file content, which must be UTF-8 (a BOM is allowed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        start = error.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        return [PolicyError(filename, line, column, "the file is not valid UTF-8 text")]
    return load_policy(text, filename)


def _load(text: str, filename: str) -> Policy | list[PolicyError]:
    if len(text) > MAX_POLICY_CHARS:
        return [PolicyError(filename, 1, 1, f"the file is over {MAX_POLICY_CHARS} characters")]
    try:
        loader = _CappedLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        return [_yaml_error(error, filename)]
    except yaml.reader.ReaderError as error:
        line, column = _position(text, error.position)
        return [PolicyError(filename, line, column, f"YAML: {_reader_reason(error)}")]
    except yaml.YAMLError as error:
        return [PolicyError(filename, 1, 1, f"YAML: {error}")]

    converter = _Converter()
    data: object = {}
    if root is not None:
        try:
            data = converter.convert(root, ())
        except _TooComplexError as error:
            return [_at(filename, error.node, str(error))]
    doc = converter.document
    errors = [_at(filename, node, message) for node, message in doc.problems]
    structural = {(error.line, error.column) for error in errors}
    if data is None:
        data = {}  # an explicit `null` document is as empty as an empty file
    if not isinstance(data, dict):
        assert root is not None
        kind = _KINDS.get(type(data), "a single value")
        message = f"a policy must be a mapping of keys such as `version: 1`, not {kind}"
        return [_at(filename, root, message)]

    try:
        policy = Policy.model_validate(data, context={DEFER_CROSS_CHECKS: True})
    except ValidationError as invalid:
        for found in _validation_errors(invalid, doc, filename):
            # A value already reported as unreadable YAML needs no second message.
            if (found.line, found.column) not in structural:
                errors.append(found)
        if not errors:  # never report "invalid" without saying why
            errors.append(PolicyError(filename, 1, 1, f"invalid policy: {invalid}"))
        return _finish(errors)
    for problem in policy_problems(policy):
        loc = _resolve(problem.loc, doc)
        errors.append(_at_loc(filename, doc, loc, problem.message, at_key=problem.at_key))
    if errors:
        return _finish(errors)
    return policy


def _finish(errors: list[PolicyError]) -> list[PolicyError]:
    """Sorted by position, without repeats; structural problems come first at a spot."""
    unique: dict[tuple[int, int, str], PolicyError] = {}
    for error in errors:
        unique.setdefault((error.line, error.column, error.message), error)
    return sorted(unique.values(), key=lambda e: (e.line, e.column))


def _yaml_error(error: yaml.MarkedYAMLError, filename: str) -> PolicyError:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "invalid YAML"
    message = f"YAML syntax error: {problem}"
    if error.context and error.context_mark is not None and error.problem:
        context_mark = error.context_mark
        message += (
            f" ({error.context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
        )
    if mark is None:
        return PolicyError(filename, 1, 1, message)
    return PolicyError(filename, mark.line + 1, mark.column + 1, message)


def _reader_reason(error: yaml.reader.ReaderError) -> str:
    character = error.character
    if isinstance(character, int) and error.encoding == "unicode":
        return f"the character U+{character:04X} is not allowed"
    return str(error.reason)


def _position(text: str, index: int) -> tuple[int, int]:
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def _at(filename: str, node: Node, message: str) -> PolicyError:
    mark = node.start_mark
    return PolicyError(filename, mark.line + 1, mark.column + 1, message)


def _at_loc(filename: str, doc: _Document, loc: Loc, message: str, *, at_key: bool) -> PolicyError:
    node = doc.keys.get(loc) if at_key else None
    if node is None:
        node = doc.values.get(loc)
    if node is None:
        return PolicyError(filename, 1, 1, message)
    return _at(filename, node, message)


def _resolve(raw: tuple[Any, ...], doc: _Document) -> Loc:
    """The longest key path in the document that `raw` (a pydantic loc) walks through."""
    current: Loc = ()
    for part in raw:
        candidate = (*current, part)
        if candidate in doc.values:
            current = candidate
    return current


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _validation_errors(
    invalid: ValidationError, doc: _Document, filename: str
) -> list[PolicyError]:
    errors: list[PolicyError] = []
    for detail in invalid.errors(include_url=False):
        raw = tuple(detail["loc"])
        kind = detail["type"]
        loc = _resolve(raw, doc)
        where = _dotted(loc) or "policy"
        union_branch = next((p for p in raw if isinstance(p, str) and "[" in p[1:]), None)
        union_node = None
        if union_branch is not None:
            union_node = doc.values.get(_resolve(raw[: raw.index(union_branch)], doc))
        if union_branch is not None and union_branch.startswith("literal["):
            if isinstance(union_node, SequenceNode):
                continue  # the list branch reports what is wrong inside the list
            message = f'{where}: must be "owners" or a list of users and teams'
            errors.append(_at_loc(filename, doc, loc, message, at_key=False))
            continue
        if (
            union_branch is not None
            and union_branch.startswith("list[")
            and not isinstance(union_node, SequenceNode)
        ):
            continue  # the literal branch reports the wrong kind of value
        if kind == "extra_forbidden":
            key = raw[-1]
            message = f"unknown key {key!r}" + _suggestion(str(key), raw[:-1], loc[:-1])
            errors.append(_at_loc(filename, doc, loc, message, at_key=True))
        elif kind == "missing":
            message = f"{where}: missing required key {raw[-1]!r}"
            errors.append(_at_loc(filename, doc, loc, message, at_key=True))
        elif "[key]" in raw:
            reason = _reason(detail["msg"])
            errors.append(_at_loc(filename, doc, loc, f"{where}: {reason}", at_key=True))
        elif kind == "literal_error" and raw == ("version",):
            value = detail.get("input")
            message = f"unsupported policy version {value!r}; this trunkline reads version 1"
            errors.append(_at_loc(filename, doc, loc, message, at_key=False))
        else:
            reason = _reason(detail["msg"])
            errors.append(_at_loc(filename, doc, loc, f"{where}: {reason}", at_key=False))
    return errors


def _reason(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _suggestion(key: str, parent_raw: tuple[Any, ...], parent: Loc) -> str:
    allowed = _allowed_keys(parent_raw)
    if not allowed:
        return ""
    where = f" in {_dotted(parent)}" if parent else ""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}{hint} (allowed: {', '.join(allowed)})"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts at `loc`, found by walking the model's annotations."""
    current: Any = Policy
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    model = _unwrap(current)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) != 1:
                return annotation
            annotation = models[0]
        else:
            return annotation


def _step(annotation: Any, part: Any) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin is list:
        return typing.get_args(annotation)[0]
    return None
