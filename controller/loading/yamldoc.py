"""YAML text -> plain data plus the mark of every key and value, within hard bounds.

A desired-state file is input from whoever can write to the directory, so reading it must never
crash, hang or exhaust memory.  PyYAML alone does all three on hostile text: its composer
recurses once per nesting level (a few thousand ``[`` end in ``RecursionError``), and aliases
(``&a`` / ``*a``) share nodes, so a "billion laughs" file of a few lines expands to billions of
values when turned into Python data.  :class:`LoadLimits` bounds, per document:

* ``max_depth``: nesting levels, counted while composing (before Python's recursion limit);
* ``max_nodes``: YAML nodes composed (aliases count once here);
* ``max_values``: values produced while expanding the node graph into data (aliases count
  every time they are used: this is the alias-expansion bound);
* ``max_seconds``: wall time for composing and expanding, on an injected monotonic source.

The byte size of a file is bounded where it is read (:mod:`controller.loading.loader`).  Every
limit raises :class:`DocumentError` with the mark where it was hit, which the loader turns into
one ``file:line:col`` error that blocks that file's app only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "DEFAULT_LIMITS",
    "DocumentError",
    "LoadLimits",
    "Marks",
    "PathParts",
    "parse_yaml",
]

PathParts = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: The clock is read once per this many nodes (reading it per node would double the cost).
_CLOCK_EVERY = 256


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """Hard bounds on one desired-state document (see the module docstring).

    The defaults are two to three orders of magnitude above a real file (the examples are
    about 2 KB, 100 values, 6 levels) and keep the worst case to a few seconds of CPU.
    """

    max_bytes: int = 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 20_000
    max_values: int = 20_000
    max_seconds: float = 5.0


DEFAULT_LIMITS = LoadLimits()


@dataclass(slots=True)
class Marks:
    """Where each key and value of the document was written, by path."""

    keys: dict[PathParts, yaml.Mark] = field(default_factory=dict)
    values: dict[PathParts, yaml.Mark] = field(default_factory=dict)


class DocumentError(Exception):
    """A problem with the document as a whole or at one place (``mark``, ``path``)."""

    def __init__(self, mark: yaml.Mark | None, path: PathParts, message: str) -> None:
        super().__init__(message)
        self.mark, self.path, self.message = mark, path, message


class _Budget:
    """Counts nodes and values, and watches the time, against :class:`LoadLimits`."""

    def __init__(self, limits: LoadLimits, monotonic: Callable[[], float]) -> None:
        self.limits = limits
        self._monotonic = monotonic
        self._deadline = monotonic() + limits.max_seconds
        self.nodes = 0
        self.values = 0

    def node(self, mark: yaml.Mark | None) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise DocumentError(
                mark, (), f"document has more than {self.limits.max_nodes} YAML nodes"
            )
        self._tick(self.nodes, mark)

    def value(self, mark: yaml.Mark | None) -> None:
        self.values += 1
        if self.values > self.limits.max_values:
            raise DocumentError(
                mark,
                (),
                f"document expands to more than {self.limits.max_values} values "
                "(YAML aliases used too often?)",
            )
        self._tick(self.values, mark)

    def _tick(self, count: int, mark: yaml.Mark | None) -> None:
        if count % _CLOCK_EVERY == 0 and self._monotonic() > self._deadline:
            raise DocumentError(
                mark, (), f"document takes longer than {self.limits.max_seconds:g} s to read"
            )


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with its (recursive) composer bounded in depth, size and time."""

    def __init__(self, text: str, budget: _Budget) -> None:
        super().__init__(text)
        self._budget = budget
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            if self._depth > self._budget.limits.max_depth:
                raise DocumentError(
                    mark,
                    (),
                    f"document nests deeper than {self._budget.limits.max_depth} levels",
                )
            self._budget.node(mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _build(node: Node, path: PathParts, marks: Marks, loader: _BoundedLoader, b: _Budget) -> Any:
    """Plain data from a YAML node, recording the marks of every key and value by path."""
    b.value(node.start_mark)
    marks.values.setdefault(path, node.start_mark)
    if len(path) > b.limits.max_depth:  # aliases can nest a node inside itself
        raise DocumentError(
            node.start_mark, path[:2], f"document nests deeper than {b.limits.max_depth} levels"
        )
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        first_seen: dict[str, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                raise DocumentError(
                    key_node.start_mark, path, "YAML merge keys (<<) are not supported"
                )
            if not isinstance(key_node, ScalarNode):
                raise DocumentError(key_node.start_mark, path, "mapping keys must be plain text")
            key = str(key_node.value)
            if key in first_seen:
                raise DocumentError(
                    key_node.start_mark,
                    (*path, key),
                    f"duplicate key (first defined on line {first_seen[key].line + 1})",
                )
            first_seen[key] = key_node.start_mark
            marks.keys[(*path, key)] = key_node.start_mark
            out[key] = _build(value_node, (*path, key), marks, loader, b)
        return out
    if isinstance(node, SequenceNode):
        return [_build(item, (*path, i), marks, loader, b) for i, item in enumerate(node.value)]
    return loader.construct_object(node)


def parse_yaml(
    text: str,
    *,
    limits: LoadLimits = DEFAULT_LIMITS,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[Any, Marks]:
    """Compose ``text`` (one document) and expand it into data with marks, within ``limits``.

    Raises :class:`DocumentError` for a limit or a structural rule (merge keys, duplicate or
    non-text keys), and PyYAML's ``YAMLError`` for invalid YAML.
    """
    if len(text) > limits.max_bytes:  # text given directly, not read from a file
        raise DocumentError(None, (), f"document is larger than {limits.max_bytes} bytes")
    marks = Marks()
    budget = _Budget(limits, monotonic)
    loader = _BoundedLoader(text, budget)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, marks
        return _build(node, (), marks, loader, budget), marks
    finally:
        loader.dispose()
