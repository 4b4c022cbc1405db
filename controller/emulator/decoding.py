"""Typed decoding of request bodies and query strings, the way Fly's Go server does it.

Fly decodes every JSON body into typed Go structs (``fly.MachineConfig`` and the request structs
around it) and answers 400 when a value has the wrong JSON type, with the Go decoder's message::

    json: cannot unmarshal array into Go struct field MachineMetrics.config.metrics.port of type int

The emulator does the same, driven by the component schemas of the saved spec (``load_spec()``),
so the whole ``fly.MachineConfig`` tree is checked without a hand-written copy of it.  Go's rules
are followed where they differ from JSON Schema:

* unknown keys are accepted and dropped (Go ignores them, so Fly never stores them; a field newer
  than the saved spec, e.g. sent through the controller's ``x_passthrough``, therefore does not
  round-trip through the emulator);
* ``null`` is accepted anywhere and means "absent" (it is removed from objects; in arrays and maps
  it becomes the element type's zero value, as Go does);
* keys match struct fields case-insensitively, an exact match first; they are renamed to the
  field's name;
* integers must be whole numbers within int64; ``1.5``, ``1e3`` and ``"1"`` are refused.

Where the spec cannot say what Go accepts, :data:`GO_OVERRIDES` does (custom ``UnmarshalJSON``
methods in fly-go), and :data:`NEWER_FIELDS` adds request fields the saved spec predates (SPEC-NEW,
FLY_API.md 1.3, 1.10).  Spec enums are enforced after decoding (400): Fly validates those values,
and a typo in ``kind`` or ``autostop`` should not pass silently.

Query parameters the spec types as boolean or integer are parsed like Go's ``strconv.ParseBool``
and ``strconv.Atoi`` (an empty value is not a boolean either).  Their 400 messages start with
``invalid_argument:``, as flyd's do for /wait (FLY_API.md 3.2); the rest of the text is chosen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from controller.emulator import apierrors
from controller.emulator.spec import load_spec

INT64 = (-(2**63), 2**63 - 1)
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_REF = "#/components/schemas/"

# Request fields SPEC-NEW has and the saved spec lacks; Go decodes them like any other field.
NEWER_FIELDS: Mapping[str, Mapping[str, dict[str, Any]]] = {
    "CreateMachineRequest": {
        "min_secrets_version": {"type": "integer"},  # FLY_API.md 1.3
        "skip_secrets": {"type": "boolean"},
    },
    "UpdateMachineRequest": {
        "min_secrets_version": {"type": "integer"},  # FLY_API.md 1.4
        "skip_secrets": {"type": "boolean"},
    },
    "CreateAppRequest": {
        "name": {"type": "string"},  # FLY_API.md 1.10: SPEC-NEW field name
        "idempotency_key": {"type": "string"},
    },
}

# Query parameters SPEC-NEW added, with their types (FLY_API.md 1.1, 1.2, 1.6, 1.9).
NEWER_QUERY: Mapping[tuple[str, str], Mapping[str, str]] = {
    ("get", "/apps/{app_name}/machines"): {
        "include_leases": "boolean",
        "limit": "integer",
        "cursor": "string",
    },
    ("get", "/apps/{app_name}/machines/{machine_id}"): {
        "version": "string",
        "include_leases": "boolean",
    },
    ("get", "/apps/{app_name}/machines/{machine_id}/wait"): {
        "version": "string",
        "from_event_id": "string",
    },
    ("get", "/apps/{app_name}/machines/{machine_id}/events"): {"limit": "integer"},
}


@dataclass(frozen=True)
class Where:
    """The Go decoder's error context: the innermost struct and the field path from the root."""

    root: str
    struct: str | None = None
    path: tuple[str, ...] = ()

    def into(self, struct: str, name: str) -> Where:
        return Where(self.root, struct, (*self.path, name))

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _unmarshal(value: Any, go_type: str, where: Where) -> apierrors.ApiError:
    kind = _json_kind(value)
    if kind == "number" and go_type == "int" and not isinstance(value, int):
        kind = f"number {value!r}"  # Go quotes the literal only when a number misses an int
    if where.struct is None:
        text = f"json: cannot unmarshal {kind} into Go value of type {go_type}"
    else:
        text = (
            f"json: cannot unmarshal {kind} into Go struct field "
            f"{where.struct}.{where.dotted} of type {go_type}"
        )
    return apierrors.bad_request(text)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _duration(value: Any, where: Where) -> Any:
    """fly-go ``Duration.UnmarshalJSON``: a Go duration string, or a number of nanoseconds."""
    if isinstance(value, str):
        if value == "0" or _GO_DURATION.match(value):
            return value
        raise apierrors.bad_request(
            f'invalid duration for {where.dotted or where.root}: time: invalid duration "{value}"'
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not INT64[0] <= value <= INT64[1]:
            raise _unmarshal(value, "fly.Duration", where)
        return go_duration(int(value))  # stored and answered as Go's MarshalJSON writes it
    raise _unmarshal(value, "fly.Duration", where)


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``1.5s``, ``1m30s``, ``2h0m0s``, ``250ms``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    n = abs(nanoseconds)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _trim(n / size if size > 1 else n, size) + unit
    hours, rest = divmod(n, 3_600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = _trim(rest / 10**9, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: float, size: int) -> str:
    text = f"{value:.{len(str(size)) - 1}f}" if size > 1 else str(int(value))
    return text.rstrip("0").rstrip(".") if "." in text else text


def _autostop(value: Any, where: Where) -> Any:
    """fly-go ``MachineAutostop``: the string form, or the old boolean form."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value not in ("off", "stop", "suspend"):
            raise _bad_enum(value, ("off", "stop", "suspend"), where)
        return value
    raise _unmarshal(value, "fly.MachineAutostop", where)


# Custom Go unmarshalers the spec cannot describe: by component name, or "component.property".
GO_OVERRIDES: Mapping[str, Callable[[Any, Where], Any]] = {
    "fly.Duration": _duration,  # the spec says {"time.Duration": int}; Go reads "10s" or 1e9
    "fly.MachineService.autostop": _autostop,  # the spec's own description: string or boolean
}


def _bad_enum(value: Any, allowed: Sequence[Any], where: Where) -> apierrors.ApiError:
    options = ", ".join(str(v) for v in allowed)
    return apierrors.bad_request(
        f"invalid value {value!r} for {where.dotted or where.root}: must be one of {options}"
    )


@dataclass
class Decoder:
    """Walks one schema tree of the spec; see the module docstring for the rules."""

    schemas: Mapping[str, Any]
    _visiting: list[str] = field(default_factory=list)

    def go_type(self, node: Mapping[str, Any]) -> str:
        name = _ref_name(node)
        if name is not None:
            return _go_name(name)
        kind = node.get("type")
        if kind == "array":
            return "[]" + self.go_type(node.get("items", {}))
        if kind == "object" and isinstance(node.get("additionalProperties"), dict):
            return "map[string]" + self.go_type(node["additionalProperties"])
        if kind == "object" and "allOf" in node:
            return self.go_type(node["allOf"][0])
        if kind == "object":
            return "map[string]interface {}"
        return {"integer": "int", "number": "float64", "boolean": "bool"}.get(str(kind), "string")

    def decode(self, node: Mapping[str, Any], value: Any, where: Where) -> Any:
        """``value`` checked against ``node``; returns it normalised (see module docstring)."""
        name = _ref_name(node)
        if name is None and "allOf" in node and len(node["allOf"]) == 1:
            name = _ref_name(node["allOf"][0])
        if name is not None:
            override = GO_OVERRIDES.get(name)
            if override is not None:
                return override(value, where)
            return self._struct(name, value, where)
        kind = node.get("type")
        go_type = self.go_type(node)
        if kind == "string":
            if not isinstance(value, str):
                raise _unmarshal(value, go_type, where)
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _unmarshal(value, go_type, where)
            if not INT64[0] <= value <= INT64[1]:
                raise _unmarshal(float(value), go_type, where)  # Go: "number 1e+30"
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _unmarshal(value, go_type, where)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise _unmarshal(value, go_type, where)
        elif kind == "array":
            if not isinstance(value, list):
                raise _unmarshal(value, go_type, where)
            items = node.get("items", {})
            return [self._element(items, item, where) for item in value]
        elif kind == "object":
            if not isinstance(value, dict):
                raise _unmarshal(value, go_type, where)
            values = node.get("additionalProperties")
            if isinstance(values, dict):
                return {k: self._element(values, v, where) for k, v in value.items()}
            return value
        if "enum" in node and value not in node["enum"]:
            raise _bad_enum(value, node["enum"], where)
        return value

    def _element(self, node: Mapping[str, Any], value: Any, where: Where) -> Any:
        """An array item or map value: ``null`` becomes the element type's zero value."""
        if value is None:
            resolved = self._resolve(node)
            if resolved.get("required"):  # a zero struct lacks its required fields
                return self.decode(node, {}, where)
            return _zero(resolved)
        return self.decode(node, value, where)

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        name = _ref_name(node)
        return self.schemas[name] if name is not None else node

    def _struct(self, name: str, value: Any, where: Where) -> Any:
        schema = self.schemas[name]
        if schema.get("type") != "object" or "properties" not in schema:
            return self.decode(schema, value, where)  # a named scalar (an enum type)
        go_name = _go_name(name)
        if not isinstance(value, dict):
            raise _unmarshal(value, go_name, where)
        struct = go_name.split(".", 1)[1]
        properties: dict[str, Any] = {**schema["properties"], **NEWER_FIELDS.get(name, {})}
        folded = {key.lower(): key for key in properties}
        out: dict[str, Any] = {}
        present = {folded.get(key.lower(), key) for key, item in value.items() if item is not None}
        for required in schema.get("required", []):
            if required not in present:  # the spec's required fields (fly.Static)
                path = ".".join((*where.path, required))
                raise apierrors.bad_request(f"invalid {path}: {required} is required")
        for key, item in value.items():
            canonical = key if key in properties else folded.get(key.lower())
            if canonical is None:
                continue  # unknown to the spec: Go ignores it, and Fly never stores it
            if item is None:
                continue  # null leaves a Go field at its zero value: absent
            inner = where.into(struct, canonical)
            override = GO_OVERRIDES.get(f"{name}.{canonical}")
            if override is not None:
                out[canonical] = override(item, inner)
            else:
                out[canonical] = self.decode(properties[canonical], item, inner)
        return out


def _go_name(schema: str) -> str:
    """Go's name for a spec component: ``fly.X`` stays; the server's own request types are
    unexported structs of package main (``main.stopRequest``, docs issue #2187)."""
    if schema.startswith("fly."):
        return schema
    return f"main.{schema[:1].lower()}{schema[1:]}"


def _ref_name(node: Mapping[str, Any]) -> str | None:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        return ref.removeprefix(_REF)
    return None


def _zero(node: Mapping[str, Any]) -> Any:
    kind = node.get("type")
    zeros: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False}
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return zeros.get(str(kind), "")


# ----------------------------------------------------------------------------- operations
BODY_OPTIONAL = frozenset({"Machines_create_lease"})
"""Operations whose body the spec requires but clients leave out: fly-go acquires a lease with
``?ttl=`` and no body (FLY_API.md 1.7)."""


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: what its body and query parameters must decode as."""

    method: str
    template: str
    operation_id: str
    body: str | None
    body_required: bool
    query: Mapping[str, str]


def _shape(path: str) -> str:
    return re.sub(r"\{[^/}]+\}", "{}", path)


@cache
def operations() -> dict[tuple[str, str], Operation]:
    """Every operation of the saved spec, keyed by (method, path shape without ``/v1``)."""
    spec = load_spec()
    out: dict[tuple[str, str], Operation] = {}
    for template, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            query = {
                p["name"]: str(p.get("schema", {}).get("type", "string"))
                for p in [*shared, *op.get("parameters", [])]
                if p.get("in") == "query"
            }
            query.update(NEWER_QUERY.get((method, template), {}))
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            body = _ref_name(content.get("schema", {}))
            operation_id = str(op.get("operationId", ""))
            required = bool(op.get("requestBody", {}).get("required")) and (
                operation_id not in BODY_OPTIONAL
            )
            out[(method, _shape(template))] = Operation(
                method, template, operation_id, body, required, query
            )
    return out


def operation_for(method: str, route_path: str) -> Operation | None:
    """The spec operation a /v1 route serves (matched on the path's shape), if any."""
    return operations().get((method.lower(), _shape(route_path.removeprefix("/v1"))))


def decode_body(op: Operation, value: Any) -> Any:
    """Decode a parsed JSON body as the operation's request schema; 400 on a type error, and
    on a missing body the operation requires (Go's decoder reads ``EOF``)."""
    schemas = load_spec()["components"]["schemas"]
    schema_name = op.body
    if value is None and op.body_required:
        raise apierrors.bad_request("EOF")
    if value is None or schema_name is None:
        return value
    return Decoder(schemas).decode({"$ref": _REF + schema_name}, value, Where(schema_name))


def parse_bool(name: str, raw: str) -> bool | None:
    """Go's ``strconv.ParseBool`` on a query value (an empty value too); 400 when not one."""
    if raw in GO_TRUE:
        return True
    if raw in GO_FALSE:
        return False
    raise apierrors.bad_request(
        f"invalid_argument: invalid value for query parameter {name}: "
        f'strconv.ParseBool: parsing "{raw}": invalid syntax'
    )


def parse_int(name: str, raw: str) -> int | None:
    """Go's ``strconv.Atoi`` on a query value (an empty value too); 400 when not an integer."""
    if re.fullmatch(r"[-+]?\d+", raw) and INT64[0] <= int(raw) <= INT64[1]:
        return int(raw)
    raise apierrors.bad_request(
        f"invalid_argument: invalid value for query parameter {name}: "
        f'strconv.Atoi: parsing "{raw}": invalid syntax'
    )


def check_query(op: Operation, query: Mapping[str, Sequence[str]]) -> None:
    """Every typed query parameter of ``op`` must parse; unknown parameters are ignored."""
    for name, values in query.items():
        kind = op.query.get(name)
        for raw in values:
            if kind == "boolean":
                parse_bool(name, raw)
            elif kind == "integer":
                parse_int(name, raw)
