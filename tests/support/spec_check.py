"""Validate requests and responses against Fly's published OpenAPI spec, strictly.

The saved spec (``controller/emulator/spec/fly-machines-openapi.json``, SPEC-2025 in
``controller/flyapi/FLY_API.md``) never sets
``additionalProperties: false``, so validating against it as published would accept almost any
JSON object, and a test built on it could not fail.  We therefore validate against a *strict*
copy: every object schema that lists ``properties`` rejects keys it does not list.  A misspelt
field (``currentVersion``, ``lease_tll``) in a client request or an emulator response then fails.

Where Fly's newer behaviour (FLY_API.md, SPEC-NEW) differs from the saved spec, the difference is
declared once, here, in :data:`EXTENSIONS` and :data:`OFF_SPEC_RESPONSES`, each entry citing the
FLY_API.md section that documents it.  Nothing else is allowed through.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator

from controller.emulator.spec import load_spec

HOST = "https://api.machines.dev"

# Fields the saved spec lacks, added to the strict copy.  (schema, property, json schema, why)
EXTENSIONS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("Machine", "version", {"type": "string"}, "FLY_API.md 1.2, 2: version, instance_id alias"),
    ("Machine", "lease", {"type": "object"}, "FLY_API.md 1.1: include_leases -> StrippedLease"),
    ("Machine", "cordoned", {"type": "boolean"}, "FLY_API.md 1.2 (SPEC-NEW)"),
    ("Machine", "host_features", {"type": "array"}, "FLY_API.md 1.2 (SPEC-NEW)"),
    ("CreateMachineRequest", "min_secrets_version", {"type": "integer"}, "FLY_API.md 1.3"),
    ("CreateMachineRequest", "skip_secrets", {"type": "boolean"}, "FLY_API.md 1.3"),
    ("UpdateMachineRequest", "min_secrets_version", {"type": "integer"}, "FLY_API.md 1.4"),
    ("UpdateMachineRequest", "skip_secrets", {"type": "boolean"}, "FLY_API.md 1.4"),
    ("CreateAppRequest", "name", {"type": "string"}, "FLY_API.md 1.10: SPEC-NEW field name"),
    ("CreateAppRequest", "idempotency_key", {"type": "string"}, "FLY_API.md 1.10 (SPEC-NEW)"),
    ("App", "created_at", {"type": "string"}, "FLY_API.md 1.10: SPEC-NEW returns {id, created_at}"),
    # The saved spec types StopRequest.timeout as the Go struct fly.Duration; the API and fly-go
    # send a duration string such as "1s" (FLY_API.md 1.5).  Both forms are accepted.
    (
        "StopRequest",
        "timeout",
        {"oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/fly.Duration"}]},
        'FLY_API.md 1.5: StopRequest {signal, timeout (string, e.g. "1s")}',
    ),
)

# Status codes in `main.statusCode` that SPEC-NEW added (FLY_API.md 3.1).
EXTRA_STATUS_CODES = ("volume_placement_capacity", "name_taken")

# Query parameters SPEC-NEW added, per operation (FLY_API.md 1.1, 1.2, 1.6).
EXTRA_QUERY: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("get", "/apps/{app_name}/machines"): ("include_leases", "limit", "cursor"),
    ("get", "/apps/{app_name}/machines/{machine_id}"): ("version", "include_leases"),
    ("get", "/apps/{app_name}/machines/{machine_id}/wait"): ("version", "from_event_id"),
}
METADATA_FILTER = re.compile(r"^metadata\.[^=&]+$")  # FLY_API.md 1.1: metadata.{key}

# The lease endpoints answer in a wrapped envelope, not the spec's flat Lease (FLY_API.md 1.7).
LEASE_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["status", "data"],
    "additionalProperties": False,
    "properties": {"status": {"enum": ["success"]}, "data": {"$ref": "#/components/schemas/Lease"}},
}
RELEASE_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["status", "data"],
    "additionalProperties": False,
    "properties": {
        "status": {"enum": ["success"]},
        "data": {
            "type": "object",
            "required": ["ok"],
            "additionalProperties": False,
            "properties": {"ok": {"type": "boolean"}},
        },
    },
}
LEASE_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["status", "message"],
    "additionalProperties": False,
    "properties": {
        "status": {"enum": ["error"]},
        "message": {"type": "string"},
        "code": {"type": "string"},
    },
}
GENERIC_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string"},
        "status": {"$ref": "#/components/schemas/main.statusCode"},
        "details": {"type": "object"},
    },
}
ANY_ERROR: dict[str, Any] = {"oneOf": [GENERIC_ERROR, LEASE_ERROR]}
WAIT_OK: dict[str, Any] = {  # FLY_API.md 1.6: older {"ok": true}; SPEC-NEW WaitMachineResponse
    "type": "object",
    "required": ["ok"],
    "additionalProperties": False,
    "properties": {
        "ok": {"type": "boolean"},
        "state": {"type": "string"},
        "version": {"type": "string"},
        "event_id": {"type": "string"},
    },
}


APP_CREATED: dict[str, Any] = {  # SPEC-NEW: CreateApp returns {id, created_at}
    "type": "object",
    "required": ["id"],
    "additionalProperties": False,
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "created_at": {}},
}
START_OK: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "previous_state": {"type": "string"},
        "message": {"type": "string"},
        "status": {"type": "string"},
    },
}
ACTION_OK: dict[str, Any] = {
    "type": "object",
    "required": ["ok"],
    "additionalProperties": False,
    "properties": {"ok": {"type": "boolean"}},
}


@dataclass(frozen=True)
class OffSpec:
    """A response the saved spec does not describe, with the schema it must match instead."""

    schema: Mapping[str, Any]
    why: str


# (method, path template, status) -> schema.  Status None = every non-2xx status.
OFF_SPEC_RESPONSES: Mapping[tuple[str, str, int | None], OffSpec] = {
    ("post", "/apps/{app_name}/machines/{machine_id}/lease", 200): OffSpec(
        LEASE_ENVELOPE, "FLY_API.md 1.7: wrapped {status, data} envelope"
    ),
    ("post", "/apps/{app_name}/machines/{machine_id}/lease", 201): OffSpec(
        LEASE_ENVELOPE, "FLY_API.md 1.7: 201 in SPEC-NEW and DOCS-LEASE"
    ),
    ("get", "/apps/{app_name}/machines/{machine_id}/lease", 200): OffSpec(
        LEASE_ENVELOPE, "FLY_API.md 1.7: wrapped envelope"
    ),
    ("delete", "/apps/{app_name}/machines/{machine_id}/lease", 200): OffSpec(
        RELEASE_ENVELOPE, "FLY_API.md 1.7: release returns {status, data: {ok}}"
    ),
    ("get", "/apps/{app_name}/machines/{machine_id}/wait", 200): OffSpec(
        WAIT_OK, "FLY_API.md 1.6: {ok} or WaitMachineResponse"
    ),
    ("post", "/apps", 201): OffSpec(
        APP_CREATED, "FLY_API.md 1.10: SPEC-NEW returns {id, created_at}"
    ),
    ("post", "/apps/{app_name}/machines/{machine_id}/start", 200): OffSpec(
        START_OK, "FLY_API.md 1.5: FLYGO decodes {message, status, previous_state} from start"
    ),
    # The saved spec declares these 200s without a body.  The emulator answers a minimal
    # {"ok": true}; FLY_API.md 1.5 documents no body for them, so the client must (and does)
    # accept an empty body as well (tests/flyapi).  The body is held to exactly that shape.
    **{
        (method, f"/apps/{{app_name}}/machines/{{machine_id}}{suffix}", 200): OffSpec(
            ACTION_OK, "FLY_API.md 1.5: spec declares no body; emulator sends {ok}"
        )
        for method, suffix in (
            ("post", "/stop"),
            ("post", "/suspend"),
            ("post", "/restart"),
            ("post", "/cordon"),
            ("post", "/uncordon"),
            ("delete", ""),
        )
    },
}
# Error statuses: FLY_API.md 3.1/3.2 document two envelopes for 4xx/5xx on every endpoint.
ERROR_WHY = "FLY_API.md 3.1-3.2: generic {error,status,details} or lease {status,message,code}"


def _strict(node: Any) -> Any:
    """Return a copy of a schema tree where listed properties are the only ones allowed."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def load_strict_spec() -> dict[str, Any]:
    """The saved spec made strict, with the declared SPEC-NEW extensions added."""
    spec: dict[str, Any] = copy.deepcopy(load_spec())
    schemas = spec["components"]["schemas"] = _strict(spec["components"]["schemas"])
    for schema_name, prop, prop_schema, _why in EXTENSIONS:
        schemas[schema_name]["properties"][prop] = prop_schema
    schemas["main.statusCode"]["enum"] = [*schemas["main.statusCode"]["enum"], *EXTRA_STATUS_CODES]
    # `CreateMachineRequest.config` is `allOf[MachineConfig] + type: object`: fine as is.
    for (method, template), names in EXTRA_QUERY.items():
        params = spec["paths"][template][method].setdefault("parameters", [])
        params.extend({"name": n, "in": "query", "schema": {"type": "string"}} for n in names)
    return spec


def _template_for(spec: Mapping[str, Any], method: str, path: str) -> str | None:
    for template, ops in spec["paths"].items():
        if method not in ops:
            continue
        pattern = "^/v1" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return str(template)
    return None


@dataclass
class SpecChecker:
    """Collects every spec violation seen in a test; ``assert_clean()`` fails with all of them."""

    spec: dict[str, Any] = field(default_factory=load_strict_spec)
    violations: list[str] = field(default_factory=list)
    checked: int = 0

    def __post_init__(self) -> None:
        self._api = OpenAPI.from_dict(self.spec)

    # ------------------------------------------------------------------ requests
    def check_request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Iterable[str]],
        header_names: Iterable[str],
        body: Any,
    ) -> None:
        """Validate one request (as the client sent it or as the emulator logged it)."""
        method = method.lower()
        if path.startswith("/_emulator"):
            return
        template = _template_for(self.spec, method, path)
        if template is None:
            self.violations.append(f"{method.upper()} {path}: no such operation in the spec")
            return
        self.checked += 1
        args: dict[str, Any] = {}
        for name, values in query.items():
            values = list(values)
            if METADATA_FILTER.match(name):
                continue  # FLY_API.md 1.1: metadata.{key} filters (SPEC-NEW)
            args[name] = values[-1] if values else ""
        headers = dict.fromkeys(header_names, "present")
        data = None if body is None else json.dumps(body).encode()
        request = MockRequest(HOST, method, path, args=args, headers=headers, data=data)
        try:
            self._api.validate_request(request)
        except Exception as exc:  # openapi-core raises a family of errors; report them all
            self.violations.append(f"request {method.upper()} {path}: {_explain(exc)}")
            return
        unknown = set(args) - self._declared_query(method, template)
        if unknown:
            self.violations.append(f"request {method.upper()} {path}: unknown query {unknown}")

    def _declared_query(self, method: str, template: str) -> set[str]:
        params = self.spec["paths"][template][method].get("parameters", [])
        return {p["name"] for p in params if p["in"] == "query"}

    # ----------------------------------------------------------------- responses
    def check_response(self, method: str, path: str, status: int, body: bytes) -> None:
        """Validate one response body for the operation at ``method path``."""
        method = method.lower()
        template = _template_for(self.spec, method, path)
        if template is None:
            return  # reported by check_request
        self.checked += 1
        where = f"response {status} to {method.upper()} {path}"
        off_spec = OFF_SPEC_RESPONSES.get((method, template, status))
        if off_spec is not None:
            self._check_schema(where, off_spec.schema, body)
            return
        if status >= 400:  # ERROR_WHY: every endpoint, whatever the spec declares
            self._check_schema(where, ANY_ERROR, body)
            return
        content_type = "application/json" if body else ""
        request = MockRequest(HOST, method, path)
        response = MockResponse(body, status_code=status, content_type=content_type)
        try:
            self._api.validate_response(request, response)
        except Exception as exc:  # see above
            self.violations.append(f"{where}: {_explain(exc)}")

    def _check_schema(self, where: str, schema: Mapping[str, Any], body: bytes) -> None:
        try:
            instance = json.loads(body)
        except ValueError:
            self.violations.append(f"{where}: body is not JSON: {body[:120]!r}")
            return
        # Carry the spec's components along so `#/components/...` references resolve.
        rooted = {**schema, "components": self.spec["components"]}
        validator = OAS30Validator(rooted)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        self.violations.extend(f"{where}: {e.message} at {list(e.path)}" for e in errors[:5])

    # ------------------------------------------------------------------ exchanges
    def check_exchange(self, request: httpx.Request, response: httpx.Response) -> None:
        """Validate what an httpx client sent and what it got back."""
        body = json.loads(request.content) if request.content else None
        query: dict[str, list[str]] = {}
        for name, value in request.url.params.multi_items():
            query.setdefault(name, []).append(value)
        header_names = [name.lower() for name in request.headers]
        self.check_request(request.method, request.url.path, query, header_names, body)
        self.check_response(
            request.method, request.url.path, response.status_code, response.content
        )

    def check_logged(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Validate requests from the emulator's request log (what the server received)."""
        for entry in entries:
            self.check_request(
                entry["method"],
                entry["path"],
                entry["query"],
                entry["headers_present"],
                entry["body"],
            )

    def assert_clean(self) -> None:
        assert self.checked > 0, "nothing was validated against the spec"
        assert not self.violations, "spec violations:\n" + "\n".join(self.violations)


def _explain(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None and len(parts) < 4:
        parts.append(f"{type(cause).__name__}: {cause}")
        inner = getattr(cause, "schema_errors", None)
        if inner:
            parts.extend(str(getattr(e, "message", e)) for e in list(inner)[:3])
        cause = cause.__cause__
    return " <- ".join(parts)
