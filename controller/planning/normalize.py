"""Canonical projection of machine configs: the one place that knows what Fly rewrites.

Fly stores a config with server-filled defaults and returns fields it owns, so diffing the JSON
we sent against the JSON we read back shows changes nobody made (the old Terraform provider's
perpetual diffs, FLY_API.md section 6 item 9).  :func:`canonical` maps a config to a form in
which those differences vanish.  It is applied to **both** sides, desired and live, so a rule
can never make one side "win"; equality of canonical forms is the planner's notion of "in sync".

What :func:`canonical` does, in order:

1. **Projection.**  Only fields the config model knows (:mod:`controller.model.flyconfig`)
   and the ``x_passthrough`` fields of the desired config (``extra``) are compared.  Anything
   else Fly returns (``size``, ``mounts[].encrypted``, fields Fly adds in the future) is not
   ours to diff: a new server-filled field must never trigger a fleet-wide rolling restart.
2. **Rules** from :data:`RULES` (the table below), each with its source.
3. **Empty is missing**: ``None``, ``{}`` and ``[]`` equal an absent field, at any depth
   (TFFLY #77 ``env = {}``, #127/#151 ``services`` null vs empty list).
4. **Defaults** Fly fills when a field is absent (``guest``, ``restart``).

``image`` is compared as the requested reference in ``config.image``.  The resolved digest lives
in the machine's top-level ``image_ref``, which is not part of the config and never compared.

Identity metadata (``reconciler/*``) is excluded here and compared separately by the planner.

Also here: :func:`spec_hash` (the ``reconciler/spec`` tag), which fields are sensitive
(:data:`SENSITIVE_PATTERNS`: env values not listed as shown, inline file contents), and
:func:`diff`, the
field-level diff whose sensitive values are replaced by :data:`REDACTED` at the source.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from controller.core import redaction
from controller.model.actual import RECONCILER_PREFIX
from controller.model.desired import DesiredApp
from controller.model.flyconfig import (
    FLY_METADATA_PREFIX,
    MachineConfig,
    format_go_duration,
    parse_go_duration,
)

__all__ = [
    "REDACTED",
    "RULES",
    "SENSITIVE_PATTERNS",
    "FieldChange",
    "Rule",
    "canonical",
    "diff",
    "format_path",
    "is_sensitive",
    "is_sensitive_parts",
    "normalize_image",
    "passthrough_paths",
    "sensitive_paths",
    "sensitive_values",
    "spec_hash",
]

PathParts = tuple[str | int, ...]
RuleKind = Literal[
    "default", "empty_is_missing", "zero_is_unset", "duration", "alias", "drop_keys", "not_compared"
]


class Rule(NamedTuple):
    """One normalisation rule: which field, what kind, the effect, and why we believe it."""

    path: str
    kind: RuleKind
    effect: str
    source: str


_OMITEMPTY = (
    'fly-go machine_types.go: a non-pointer field tagged `json:",omitempty"`; Go drops its '
    'zero value (false, 0, "") when the config is serialised, so zero and absent are the '
    "same config (FLY_API.md sources: FLYGO)"
)
_TFFLY_GUEST = (
    "FLY_API.md 6.9: TFFLY #74 (cpus 8 -> 1, memory 8192 -> 256) and the provider's hard-coded "
    "defaults cpu_kind shared, cpus 1, memory_mb 256"
)
_RESTART = (
    "FLY_API.md 6.9 (init/restart defaults); the spec's fly.MachineRestart: on-failure is the "
    "'Default when no explicit policy is set'; Fly docs 'Machine restart policy': on-failure "
    "tries up to 10 restarts"
)

RULES: tuple[Rule, ...] = (
    # -- server-filled defaults (applied after the projection; both sides get them)
    Rule("guest.cpu_kind", "default", '"shared"', _TFFLY_GUEST),
    Rule("guest.cpus", "default", "1", _TFFLY_GUEST),
    Rule(
        "guest.memory_mb",
        "default",
        "256 x cpus (shared), 2048 x cpus (performance)",
        _TFFLY_GUEST + "; per-CPU sizes from fly-go MachinePresets (inference for > 1 CPU; the "
        "loader requires memory_mb for any guest but shared-cpu-1x)",
    ),
    Rule("restart.policy", "default", '"on-failure"', _RESTART),
    Rule("restart.max_retries", "default", "10 when the policy is on-failure", _RESTART),
    # -- empty is missing (applied everywhere, after the other rules)
    Rule(
        "(every field)",
        "empty_is_missing",
        "null, {} and [] == absent, at any depth",
        "FLY_API.md 6.9: TFFLY #77 (env = {} vs unknown), #127/#151 (services null vs empty "
        "list); Go omitempty drops empty slices and maps",
    ),
    Rule(
        "init",
        "empty_is_missing",
        "{} (what Fly returns when no init was sent) == absent",
        "FLY_API.md 6.9 (init defaults); fly-go MachineConfig.Init is a struct, so it is always "
        "serialised, as {} when empty",
    ),
    # -- Go omitempty: zero value == absent
    *(
        Rule(path, "zero_is_unset", "false / 0 / empty string == absent", _OMITEMPTY)
        for path in (
            "image",
            "schedule",
            "auto_destroy",
            "guest.cpu_kind",
            "guest.cpus",
            "guest.memory_mb",
            "guest.gpus",
            "guest.gpu_kind",
            "guest.host_dedication_id",
            "init.tty",
            "restart.policy",
            "restart.max_retries",
            "mounts[].volume",
            "mounts[].path",
            "mounts[].extend_threshold_percent",
            "mounts[].add_size_gb",
            "mounts[].size_gb_limit",
            "services[].protocol",
            "services[].internal_port",
            "services[].ports[].force_https",
            "services[].concurrency.type",
            "services[].concurrency.hard_limit",
            "services[].concurrency.soft_limit",
            "services[].ports[].proxy_proto_options.version",
            "dns.skip_registration",
            "processes[].user",
            "metrics.port",
            "metrics.path",
        )
    ),
    # -- durations: Go time.Duration, marshalled with d.String()
    *(
        Rule(
            path,
            "duration",
            'compared as Go duration text: "60s" == "1m0s" == "60000ms"',
            "fly-go duration.go: Duration parses time.ParseDuration (or nanoseconds) and "
            "marshals d.String(), so Fly may return a different spelling of the same duration",
        )
        for path in (
            "checks.*.interval",
            "checks.*.timeout",
            "checks.*.grace_period",
            "services[].checks[].interval",
            "services[].checks[].timeout",
            "services[].checks[].grace_period",
            "stop_config.timeout",
        )
    ),
    # -- value aliases
    Rule(
        "services[].autostop",
        "alias",
        'true == "stop"; false == "off" == absent',
        "the spec's fly.MachineService.autostop: 'the API continues to use booleans for \"off\" "
        'and "stop" in responses\'; absent == off is an inference (no autostop configured)',
    ),
    Rule(
        "image",
        "alias",
        'Docker Hub short forms expanded: "nginx" == "docker.io/library/nginx:latest"',
        "Docker reference grammar (same image, different spelling); inference, harmless",
    ),
    # -- server-owned data that is never compared
    Rule(
        "metadata",
        "drop_keys",
        f"keys starting {FLY_METADATA_PREFIX!r} (Fly/flyctl) and {RECONCILER_PREFIX!r} (identity, "
        "compared separately by the planner)",
        "FLY_API.md 1.8 and 6.9 (fly_platform_version, fly_process_group...)",
    ),
    Rule(
        "mounts[].encrypted, mounts[].size_gb, mounts[].name",
        "not_compared",
        "volume attributes Fly reports in the mount; not settable per machine",
        "FLY_API.md 6.9: TFFLY #52 shows mounts.encrypted/size_gb as server-computed",
    ),
    Rule(
        "size, disable_machine_autostart",
        "not_compared",
        "deprecated by Fly in favour of guest / services[].autostart",
        "the spec's fly.MachineConfig descriptions ('Deprecated: use Guest instead')",
    ),
    Rule(
        "(any field the model does not know)",
        "not_compared",
        "projection: only modelled and x_passthrough fields are compared",
        "FLY_API.md 6.9 lesson: diff a normalised projection, never raw JSON",
    ),
)
"""The normalisation table, one row per rule; tested in ``tests/core/test_normalize.py``."""

_SHARED_MB_PER_CPU = 256  # fly-go MIN_MEMORY_MB_PER_SHARED_CPU
_PERFORMANCE_MB_PER_CPU = 2048  # fly-go MIN_MEMORY_MB_PER_CPU
_DEFAULT_MAX_RETRIES = 10

# ------------------------------------------------------------------------------ schema tree

_UNSET: Any = object()
"""Returned by a leaf transform to say "this field is absent"."""

Transform = Callable[[Any], Any]


@dataclass(slots=True)
class _Node:
    kind: Literal["object", "list", "map", "leaf"]
    fields: dict[str, _Node] | None = None
    item: _Node | None = None
    transforms: tuple[Transform, ...] = ()
    drop_key_prefixes: tuple[str, ...] = ()


def _node_for(annotation: Any) -> _Node:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _node_for(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _node_for(members[0]) if len(members) == 1 else _Node("leaf")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _object_node(annotation)
    if origin is list:
        return _Node("list", item=_node_for(typing.get_args(annotation)[0]))
    if origin is dict:
        return _Node("map", item=_node_for(typing.get_args(annotation)[1]))
    return _Node("leaf")


def _object_node(model: type[BaseModel]) -> _Node:
    fields = {
        name: _node_for(info.annotation)
        for name, info in model.model_fields.items()
        if name != "x_passthrough"
    }
    return _Node("object", fields=fields)


def _split_pattern(pattern: str) -> list[str]:
    """``services[].checks[].interval`` -> ``["services", "[]", "checks", "[]", "interval"]``."""
    out: list[str] = []
    for part in pattern.split("."):
        name = part.removesuffix("[]")
        if name:
            out.append(name)
        if part.endswith("[]"):
            out.append("[]")
    return out


def _find(root: _Node, pattern: str, *, create: bool = False) -> _Node:
    node = root
    for step in _split_pattern(pattern):
        if step in ("[]", "*"):
            if node.item is None:
                if not create:
                    raise KeyError(pattern)
                node.kind = "list" if step == "[]" else "map"
                node.item = _Node("leaf")
            node = node.item
            continue
        if node.fields is None:
            if not create:
                raise KeyError(pattern)
            node.kind, node.fields = "object", {}
        if step not in node.fields:
            if not create:
                raise KeyError(pattern)
            node.fields[step] = _Node("leaf")
        node = node.fields[step]
    return node


def _zero_is_unset(value: Any) -> Any:
    if value is False or value == "" or (type(value) is int and value == 0):
        return _UNSET
    return value


def _duration(value: Any) -> Any:
    try:
        if isinstance(value, str):
            return format_go_duration(parse_go_duration(value))
        if isinstance(value, int | float) and not isinstance(value, bool):
            return format_go_duration(int(value))  # Go accepts a number of nanoseconds
    except (ValueError, OverflowError):
        pass
    return value


def _autostop(value: Any) -> Any:
    if value is True:
        return "stop"
    if value is False or value == "off":
        return _UNSET
    return value


_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


def normalize_image(ref: str) -> str:
    """Expand Docker Hub short forms: ``nginx`` -> ``docker.io/library/nginx:latest``."""
    name, at, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name
    if registry in _HUB_ALIASES:
        registry = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    if not at and ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{registry}/{path}{at}{digest}"


def _image(value: Any) -> Any:
    return normalize_image(value) if isinstance(value, str) and value else value


def _build_tree() -> _Node:
    root = _object_node(MachineConfig)
    for rule in RULES:
        if rule.kind == "zero_is_unset":
            node = _find(root, rule.path)
            node.transforms = (*node.transforms, _zero_is_unset)
        elif rule.kind == "duration":
            node = _find(root, rule.path)
            node.transforms = (*node.transforms, _duration)
        elif rule.kind == "drop_keys":
            _find(root, rule.path).drop_key_prefixes = (FLY_METADATA_PREFIX, RECONCILER_PREFIX)
    # value aliases, bound to their functions here (the table states them once)
    _find(root, "services[].autostop").transforms += (_autostop,)
    _find(root, "image").transforms = (_image, *_find(root, "image").transforms)
    return root


_ROOT = _build_tree()
_LEAF = _Node("leaf")


def _copy_tree(node: _Node) -> _Node:
    return _Node(
        node.kind,
        fields=None if node.fields is None else {k: _copy_tree(v) for k, v in node.fields.items()},
        item=None if node.item is None else _copy_tree(node.item),
        transforms=node.transforms,
        drop_key_prefixes=node.drop_key_prefixes,
    )


@lru_cache(maxsize=256)
def _tree(extra: frozenset[str]) -> _Node:
    if not extra:
        return _ROOT
    root = _copy_tree(_ROOT)
    for pattern in sorted(extra):
        _find(root, pattern, create=True).kind = "leaf"
    return root


# ------------------------------------------------------------------------------ canonical


def _generic(value: Any) -> Any:
    """Unmodelled structure (passthrough values, free-form maps): empties dropped at depth."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            item = _generic(item)
            if item is not _UNSET:
                out[key] = item
        return out or _UNSET
    if isinstance(value, list | tuple):
        return [_generic(v) for v in value] or _UNSET
    return _UNSET if value is None else value


def _walk(value: Any, node: _Node) -> Any:
    if value is None:
        return _UNSET
    kind = node.kind
    if kind == "object" and isinstance(value, Mapping):
        fields = node.fields or {}
        out = {}
        for key, item in value.items():
            child = fields.get(key)
            if child is not None:
                item = _walk(item, child)
                if item is not _UNSET:
                    out[key] = item
        return out or _UNSET
    if kind == "list" and isinstance(value, list | tuple):
        item_node = node.item or _LEAF
        items = []
        for item in value:
            item = _walk(item, item_node)
            items.append({} if item is _UNSET else item)
        return items or _UNSET
    if kind == "map" and isinstance(value, Mapping):
        item_node = node.item or _LEAF
        prefixes = node.drop_key_prefixes
        out = {}
        for key, item in value.items():
            if prefixes and key.startswith(prefixes):
                continue
            item = _walk(item, item_node)
            if item is not _UNSET:
                out[key] = item
        return out or _UNSET
    for transform in node.transforms:
        value = transform(value)
        if value is _UNSET:
            return _UNSET
    if isinstance(value, Mapping | list | tuple):
        return _generic(value)
    return value


def _apply_defaults(config: dict[str, Any]) -> None:
    guest = config.setdefault("guest", {})
    if isinstance(guest, dict):
        kind = guest.setdefault("cpu_kind", "shared")
        cpus = guest.setdefault("cpus", 1)
        if "memory_mb" not in guest and isinstance(cpus, int):
            per_cpu = _PERFORMANCE_MB_PER_CPU if kind == "performance" else _SHARED_MB_PER_CPU
            guest["memory_mb"] = per_cpu * cpus
    restart = config.setdefault("restart", {})
    if isinstance(restart, dict):
        policy = restart.setdefault("policy", "on-failure")
        if policy == "on-failure":
            restart.setdefault("max_retries", _DEFAULT_MAX_RETRIES)


def canonical(config: Mapping[str, Any], *, extra: Iterable[str] = ()) -> dict[str, Any]:
    """The canonical projection of a machine config (a fresh dict; the input is not changed).

    ``extra`` names additional compared fields as path patterns (``containers``,
    ``services[].new_field``); the planner passes :func:`passthrough_paths` of the desired
    config, for both sides.
    """
    tree = _tree(frozenset(extra))
    out = _walk(config, tree)
    result: dict[str, Any] = {} if out is _UNSET or not isinstance(out, dict) else out
    _apply_defaults(result)
    return result


def spec_hash(canonical_config: Mapping[str, Any]) -> str:
    """Stable short hash (16 hex chars of sha256) of a canonical config's sorted-key JSON."""
    text = json.dumps(canonical_config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def passthrough_paths(config: MachineConfig) -> frozenset[str]:
    """Path patterns of every ``x_passthrough`` key in a desired config (for ``extra``)."""
    found: set[str] = set()

    def visit(obj: Any, prefix: str) -> None:
        if isinstance(obj, BaseModel):
            passthrough = getattr(obj, "x_passthrough", None)
            for key in passthrough or {}:
                found.add(f"{prefix}.{key}" if prefix else key)
            for name in type(obj).model_fields:
                if name != "x_passthrough":
                    visit(getattr(obj, name), f"{prefix}.{name}" if prefix else name)
        elif isinstance(obj, list):
            for item in obj:
                visit(item, f"{prefix}[]")
        elif isinstance(obj, dict):
            for item in obj.values():
                visit(item, f"{prefix}.*")

    visit(config, "")
    return frozenset(found)


# ------------------------------------------------------------------------------ paths, secrets

SENSITIVE_PATTERNS: tuple[str, ...] = (
    "env.*",
    "processes[].env.*",
    "files[].raw_value",
    "containers[].env.*",
    "containers[].files[].raw_value",
)
"""Fields whose values may be secret: env values (shown only when the desired group lists the
name in ``shown_env``, i.e. written literally and not secret by the one rule of
:mod:`controller.core.redaction`) and inline file contents (never shown)."""

_SENSITIVE = tuple(tuple(_split_pattern(p)) for p in SENSITIVE_PATTERNS)
_NO_NAMES: frozenset[str] = frozenset()


def _step_matches(part: str | int, step: str) -> bool:
    if step == "[]":
        return isinstance(part, int)
    if step == "*":
        return isinstance(part, str)
    return part == step


def is_sensitive_parts(parts: PathParts, shown: frozenset[str] = _NO_NAMES) -> bool:
    """Whether a field path (as parts) is, or contains, a sensitive value.

    ``shown``: env names whose values may be shown (:attr:`DesiredGroup.shown_env
    <controller.model.desired.DesiredGroup.shown_env>`); an env value of any other name is
    sensitive, so a name only the live side has (being removed) is never shown.
    """
    for pattern in _SENSITIVE:
        # a path below a sensitive field, or above one (its value contains the secret)
        if all(_step_matches(p, step) for p, step in zip(parts, pattern, strict=False)):
            literal_env = (
                len(parts) == len(pattern)
                and pattern[-2] == "env"
                and isinstance(parts[-1], str)
                and parts[-1] in shown
            )
            if not literal_env:
                return True
    return False


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_/-]+$")
_PATH_TOKEN = re.compile(r'\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?([A-Za-z0-9_/-]+)')


def format_path(parts: PathParts) -> str:
    """``("services", 0, "ports")`` -> ``services[0].ports``; odd keys as ``["a.b"]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += "[" + json.dumps(part) + "]"
    return out


def _parse_path(path: str) -> PathParts:
    parts: list[str | int] = []
    for index, quoted, plain in _PATH_TOKEN.findall(path):
        if index:
            parts.append(int(index))
        elif plain:
            parts.append(plain)
        else:
            parts.append(json.loads(f'"{quoted}"'))
    return tuple(parts)


def is_sensitive(path: str, shown: frozenset[str] = _NO_NAMES) -> bool:
    """Whether a formatted field path (``env.DB_URL``, ``files[0]``) holds a sensitive value."""
    return is_sensitive_parts(_parse_path(path), shown)


def _sensitive_leaves(
    config: Mapping[str, Any], shown: frozenset[str] = _NO_NAMES
) -> list[tuple[PathParts, Any]]:
    """Every (path, value) of a config whose value is sensitive (a leaf, never a container)."""
    found: list[tuple[PathParts, Any]] = []

    def visit(value: Any, parts: PathParts) -> None:
        if parts and is_sensitive_parts(parts, shown) and not isinstance(value, Mapping | list):
            found.append((parts, value))
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                visit(item, (*parts, str(key)))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                visit(item, (*parts, i))

    visit(config, ())
    return found


def sensitive_paths(config: Mapping[str, Any], shown: frozenset[str] = _NO_NAMES) -> list[str]:
    """Every concrete sensitive field path present in a config, sorted."""
    return sorted(format_path(parts) for parts, _ in _sensitive_leaves(config, shown))


def sensitive_values(apps: Iterable[DesiredApp]) -> list[str]:
    """Every sensitive string of the apps' configs (secret env values, file contents): what the
    log redactor must mask.  The same rule as plans and diffs (values a plan shows are not
    secrets, so the logs need not hide them)."""
    return [
        value
        for app in apps
        for group in app.groups
        for _, value in _sensitive_leaves(group.config.to_wire(), group.shown_env)
        if isinstance(value, str)
    ]


# ------------------------------------------------------------------------------ diff

REDACTED = redaction.REDACTED
"""Stands in for a sensitive value in a :class:`FieldChange` (the value itself is never kept)."""


class FieldChange(NamedTuple):
    """One changed leaf field: ``before``/``after`` are None when absent, :data:`REDACTED`
    when sensitive."""

    path: str
    before: Any
    after: Any
    sensitive: bool


def _is_leaf(value: Any) -> bool:
    if isinstance(value, Mapping):
        return not value
    if isinstance(value, list):
        return all(not isinstance(v, Mapping | list) for v in value)
    return True


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any], *, shown: frozenset[str] = _NO_NAMES
) -> list[FieldChange]:
    """Field-level changes from ``before`` to ``after`` (both canonical), sorted by path.

    ``shown``: env names whose values may appear (see :func:`is_sensitive_parts`).  Maps are
    compared key by key and lists of objects index by index, so an added service shows
    as its leaf fields; lists of scalars (``handlers``, ``cmd``) are one value.
    """
    changes: list[FieldChange] = []

    def leaf(parts: PathParts, old: Any, new: Any) -> None:
        if is_sensitive_parts(parts, shown):
            old = None if old is None else REDACTED
            new = None if new is None else REDACTED
            changes.append(FieldChange(format_path(parts), old, new, True))
        else:
            changes.append(FieldChange(format_path(parts), old, new, False))

    def visit(parts: PathParts, old: Any, new: Any) -> None:
        if old == new:
            return
        maps = (isinstance(old, Mapping) or isinstance(new, Mapping)) and all(
            v is None or isinstance(v, Mapping) for v in (old, new)
        )
        if maps:
            a: Mapping[str, Any] = old or {}
            b: Mapping[str, Any] = new or {}
            for key in sorted(set(a) | set(b)):
                visit((*parts, key), a.get(key), b.get(key))
            return
        lists = not (_is_leaf(old) and _is_leaf(new)) and all(
            v is None or isinstance(v, list) for v in (old, new)
        )
        if lists:
            seq_a: Sequence[Any] = old or []
            seq_b: Sequence[Any] = new or []
            for i in range(max(len(seq_a), len(seq_b))):
                visit(
                    (*parts, i),
                    seq_a[i] if i < len(seq_a) else None,
                    seq_b[i] if i < len(seq_b) else None,
                )
            return
        leaf(parts, old, new)

    visit((), dict(before), dict(after))
    return changes
