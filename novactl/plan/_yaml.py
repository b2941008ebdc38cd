"""YAML loading that remembers where every value came from.

Mappings load as :class:`PosDict` and sequences as :class:`PosList`; both are
ordinary ``dict``/``list`` subclasses (pydantic validates them as usual) that
also carry the line and column of each key and item, so an error found later
at ``spec.stages[2].weight`` can be reported as ``plan.yaml:41:15``.
Duplicate keys are an error (PyYAML silently keeps the last one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["Pos", "PosDict", "PosList", "YamlProblem", "load_yaml", "locate"]


@dataclass(frozen=True)
class Pos:
    line: int  # 1-based
    column: int  # 1-based
    style: str | None = None  # scalars: "" plain, "'" or '"' quoted (single-line only)

    def offset_column(self, offset: int) -> int | None:
        """Column of character ``offset`` inside this scalar, when it can be known."""
        if self.style == "":
            return self.column + offset
        if self.style in ("'", '"'):
            return self.column + 1 + offset
        return None


class PosDict(dict):
    """A dict that knows where it and each of its keys and values start."""

    pos: Pos | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_pos: dict[Any, Pos] = {}
        self.value_pos: dict[Any, Pos] = {}


class PosList(list):
    pos: Pos | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_pos: list[Pos] = []


class YamlProblem(Exception):
    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def _pos(node: Node) -> Pos:
    mark = node.start_mark
    style = None
    if isinstance(node, ScalarNode) and node.start_mark.line == node.end_mark.line:
        style = node.style or ""
    return Pos(mark.line + 1, mark.column + 1, style)


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> PosDict:
        if not isinstance(node, MappingNode):  # pragma: no cover - guarded by PyYAML
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        result = PosDict()
        result.pos = _pos(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError as exc:
                raise YamlProblem(
                    "a mapping key must be a plain value",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                ) from exc
            if key in result:
                first = result.key_pos[key]
                raise YamlProblem(
                    f"duplicate key {key!r} (first defined at line {first.line})",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.key_pos[key] = _pos(key_node)
            result.value_pos[key] = _pos(value_node)
        return result

    def construct_sequence(self, node: SequenceNode, deep: bool = False) -> PosList:
        result = PosList(self.construct_object(child, deep=True) for child in node.value)
        result.pos = _pos(node)
        result.item_pos = [_pos(child) for child in node.value]
        return result


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def load_yaml(text: str) -> Any:
    """Parse one YAML document; raises :class:`YamlProblem` with a position."""
    try:
        return yaml.load(text, Loader=_Loader)
    except YamlProblem:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise YamlProblem(f"invalid YAML: {problem}", line, column) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}", None, None) from exc


def locate(root: Any, path: Sequence[str | int]) -> tuple[Pos | None, bool]:
    """Find the position of ``path`` inside ``root``.

    Returns ``(pos, exact)``: the position of the value at ``path`` when it
    exists, else of the deepest existing ancestor (``exact`` is then False, as
    when a required field is missing).
    """
    node = root
    best: Pos | None = getattr(root, "pos", None)
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, PosDict) and part in node:
            best = node.value_pos.get(part, best)
            node = node[part]
        elif isinstance(node, PosList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_pos[part] if part < len(node.item_pos) else best
            node = node[part]
        else:
            return best, False
        if last:
            return best, True
    return best, True
