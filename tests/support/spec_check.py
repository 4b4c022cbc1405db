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
import functools
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
    # send a duration string such as "1s" (FLY_API.md 1.5).  DURATION below makes every
    # fly.Duration a string or a number of nanoseconds, this one included.
    (
        "StopRequest",
        "timeout",
        {"$ref": "#/components/schemas/fly.Duration"},
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


# The saved spec types fly.Duration as the Go struct {"time.Duration": int}; on the wire it is a
# Go duration string ("10s"), and fly-go also accepts a number of nanoseconds (FLY_API.md 1.5).
DURATION: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
DURATION_WHY = "FLY_API.md 1.5: durations travel as Go duration strings (or nanoseconds)"
WRAPPER_WHY = "swag artefact: {type: object, allOf: [ref]} around a string or Duration type"
AUTOSTOP_WHY = "the spec's own autostop description: booleans stay booleans in responses"


def load_strict_spec() -> dict[str, Any]:
    """The saved spec made strict, with the declared SPEC-NEW extensions added."""
    spec: dict[str, Any] = copy.deepcopy(load_spec())
    schemas = spec["components"]["schemas"] = _strict(spec["components"]["schemas"])
    schemas["fly.Duration"] = DURATION  # DURATION_WHY
    services = schemas["fly.MachineService"]["properties"]
    services["autostop"] = {"oneOf": [services["autostop"], {"type": "boolean"}]}  # AUTOSTOP_WHY
    # WRAPPER_WHY: the generator wraps named types as `{type: object, allOf: [ref]}`, which is
    # wrong when the named type is not an object (fly.Duration, fly.UnhealthyPolicy...).
    for schema in list(schemas.values()):
        for name, prop in schema.get("properties", {}).items():
            all_of = prop.get("allOf", [])
            if len(all_of) != 1 or "$ref" not in all_of[0]:
                continue
            target = schemas[all_of[0]["$ref"].rsplit("/", 1)[-1]]
            if target.get("type") != "object":
                schema["properties"][name] = {"$ref": all_of[0]["$ref"]}
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


@functools.cache
def _shared_strict() -> tuple[dict[str, Any], OpenAPI]:
    """The strict spec and its validator, built once per process: ``OpenAPI.from_dict`` takes
    a quarter of a second, and a checker per test only reads them."""
    spec = load_strict_spec()
    return spec, OpenAPI.from_dict(spec)


def _shared_spec() -> dict[str, Any]:
    return _shared_strict()[0]


@dataclass
class SpecChecker:
    """Collects every spec violation seen in a test; ``assert_clean()`` fails with all of them.

    Without a ``spec`` it checks against the strict spec, shared read-only by every checker.
    """

    spec: dict[str, Any] = field(default_factory=_shared_spec)
    violations: list[str] = field(default_factory=list)
    checked: int = 0

    def __post_init__(self) -> None:
        shared_spec, shared_api = _shared_strict()
        self._api = shared_api if self.spec is shared_spec else OpenAPI.from_dict(self.spec)

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


# ============================================================================ the fuzzing spec
# tests/conformance runs schemathesis with the spec below: the strict copy above, plus what the
# saved spec cannot say about requests.  Each entry names the Fly rule it encodes; a request the
# rule allows must be accepted, one it forbids must be refused (4xx), so these tighten the fuzzer
# without hiding anything from it.

# The emulator's responses to the operations it serves beyond the saved spec's shapes.
APP_SECRETS: dict[str, Any] = {
    "type": "object",
    "required": ["secrets"],
    "additionalProperties": False,
    "properties": {
        "secrets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "digest"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "digest": {"type": "string"},
                    "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                },
            },
        },
        "version": {"type": "integer"},
    },
}
SECRETS_VERSION: dict[str, Any] = {
    "type": "object",
    "required": ["version"],
    "additionalProperties": False,
    "properties": {"version": {"type": "integer"}},
}
OFF_SPEC_RESPONSES = {
    **OFF_SPEC_RESPONSES,
    ("get", "/apps/{app_name}/secrets", 200): OffSpec(
        APP_SECRETS,
        "FLY_API.md 1.3: SPEC-NEW AppSecrets; the saved spec's ListSecret is today's secret keys",
    ),
    ("delete", "/apps/{app_name}/secrets/{secret_label}", 200): OffSpec(
        SECRETS_VERSION, "FLY_API.md 1.3: SPEC-NEW DeleteAppSecretResponse {version}"
    ),
}


@dataclass(frozen=True)
class Seeded:
    """The resources a fuzzed request is pointed at (re-seeded before every request)."""

    app: str
    machine_id: str
    machine_name: str
    machine_region: str
    volume_id: str
    volume_size_gb: int


@dataclass(frozen=True)
class RequestRule:
    """A rule of the real API the saved spec's request schemas do not state."""

    where: str  # "<component>" or "<component>.<property>" or "<method> <path> <parameter>"
    schema: Mapping[str, Any]
    why: str


# fly-go converts a JSON number to time.Duration (int64); the emulator refuses what would not fit.
NANOSECONDS: dict[str, Any] = {"type": "number", "minimum": -(2**63), "maximum": 2**63 - 1}
GO_DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"


def request_rules(seeded: Seeded) -> tuple[RequestRule, ...]:
    """Every request-side deviation, each with its reason (FLY_API.md section or emulator doc)."""
    from controller.model.regions import FLY_REGIONS

    regions = sorted(FLY_REGIONS)
    return (
        RequestRule(
            "fly.Duration",
            {"oneOf": [{"type": "string", "pattern": GO_DURATION_PATTERN}, NANOSECONDS]},
            'FLY_API.md 1.5: Go durations travel as strings ("10s") or nanoseconds; the spec\'s '
            "{time.Duration} object is the Go struct, which fly-go never sends",
        ),
        RequestRule(
            "StopRequest.timeout",
            {"oneOf": [{"type": "string", "pattern": GO_DURATION_PATTERN}, NANOSECONDS]},
            "FLY_API.md 1.5: the stop timeout is a Go duration, like every fly.Duration",
        ),
        RequestRule(
            "fly.MachineService.autostop",
            {
                "oneOf": [
                    {"type": "string", "enum": ["off", "stop", "suspend"]},
                    {"type": "boolean"},
                ]
            },
            "spec's own description of autostop: a string or the old boolean form",
        ),
        RequestRule(
            "CreateMachineRequest.region",
            {"type": "string", "enum": regions},
            "FLY_API.md 1.3: a region outside Fly's list is 422 (controller.model.regions)",
        ),
        RequestRule(
            "UpdateMachineRequest.region",
            {"type": "string", "enum": [seeded.machine_region]},
            "FLY_API.md 1.4: region is immutable on update",
        ),
        RequestRule(
            "UpdateMachineRequest.name",
            {"type": "string", "enum": [seeded.machine_name]},
            "FLY_API.md 1.4: name is immutable on update",
        ),
        RequestRule(
            "CreateMachineRequest", {"required": ["config"]}, "FLY_API.md 1.3: config is required"
        ),
        RequestRule(
            "UpdateMachineRequest",
            {"required": ["config"]},
            "FLY_API.md 1.4: updates replace the whole config",
        ),
        RequestRule(
            "CreateMachineRequest.lease_ttl",
            {"type": "integer", "minimum": 1},
            "FLY_API.md 1.3: lease_ttl is a number of seconds",
        ),
        RequestRule(
            "UpdateMachineRequest.lease_ttl",
            {"type": "integer", "minimum": 1},
            "FLY_API.md 1.4: lease_ttl is a number of seconds",
        ),
        RequestRule(
            "fly.MachineConfig",
            {"required": ["image"]},
            "FLY_API.md 1.3: every machine runs an image",
        ),
        RequestRule(
            "fly.MachineConfig.image",
            {"type": "string", "pattern": r"\S"},
            "FLY_API.md 1.3: a blank image is refused (422)",
        ),
        RequestRule(
            "fly.MachineConfig.mounts",
            {"type": "array", "maxItems": 0, "items": {}},
            "FLY_API.md 1.11: a mount names an unattached volume of the app in the machine's "
            "region, which a schema cannot say; mounts are tested in tests/emulator",
        ),
        RequestRule(
            "fly.MachineGuest.cpus",
            {"type": "integer", "minimum": 1},
            "configs.py: a machine has at least one CPU (422)",
        ),
        RequestRule(
            "fly.MachineGuest.memory_mb",
            {"type": "integer", "minimum": 1},
            "configs.py: a machine has memory (422)",
        ),
        RequestRule(
            "fly.MachineGuest.cpu_kind",
            {"type": "string", "enum": ["shared", "performance"]},
            "configs.py: Fly's two CPU kinds (422)",
        ),
        RequestRule(
            "fly.MachineRestart.policy",
            {"type": "string", "enum": ["no", "always", "on-failure", "spot-price"]},
            "configs.py: the spec's fly.MachineRestart description lists the policies (422)",
        ),
        RequestRule(
            "CreateAppRequest",
            {"required": ["app_name"]},
            "FLY_API.md 1.10: an app needs a name",
        ),
        RequestRule(
            "CreateAppRequest.app_name",
            {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,62}$", "not": {"enum": ["web"]}},
            "FLY_API.md 1.10: app names are DNS labels and globally unique (422 name_taken)",
        ),
        RequestRule(
            "CreateVolumeRequest",
            {"required": ["name"]},
            "apps.py: a volume needs a name",
        ),
        RequestRule(
            "CreateVolumeRequest.name",
            {"type": "string", "pattern": r"^[a-z0-9_]{1,30}$"},
            "apps.py: Fly's volume name rule (400)",
        ),
        RequestRule(
            "CreateVolumeRequest.size_gb",
            {"type": "integer", "minimum": 1, "maximum": 500},
            "volumes.py: 1..500 GB",
        ),
        RequestRule(
            "CreateVolumeRequest.region",
            {"type": "string", "enum": regions},
            "FLY_API.md 1.11: volumes live in one of Fly's regions",
        ),
        RequestRule(
            "UpdateVolumeRequest.snapshot_retention",
            {"type": "integer", "minimum": 1, "maximum": 60},
            "volumes.py: snapshots are kept 1..60 days",
        ),
        RequestRule(
            "ExtendVolumeRequest",
            {"required": ["size_gb"]},
            "volumes.py: extend needs the new size",
        ),
        RequestRule(
            "ExtendVolumeRequest.size_gb",
            {"type": "integer", "minimum": seeded.volume_size_gb + 1, "maximum": 500},
            "volumes.py: volumes only grow, up to 500 GB",
        ),
        RequestRule(
            "CreateLeaseRequest.ttl",
            {"type": "integer", "minimum": 1},
            "FLY_API.md 1.7: ttl is a positive number of seconds",
        ),
        RequestRule(
            "get /apps org_slug",
            {"type": "string", "minLength": 1},
            "FLY_API.md 1.10: org_slug is required",
        ),
        RequestRule(
            "get /apps/{app_name}/machines/{machine_id}/wait timeout",
            {"type": "integer", "minimum": 1, "maximum": 60},
            "FLY_API.md 1.6: timeout is 1..60 seconds",
        ),
        RequestRule(
            "get /apps/{app_name}/machines/{machine_id}/wait state",
            {"type": "string", "enum": ["started", "suspended", "destroyed", "failed", "settled"]},
            "FLY_API.md 1.6: the wait states; 'stopped' also needs instance_id, a rule between "
            "two parameters a schema cannot state (tested in tests/emulator)",
        ),
        RequestRule(
            "post /apps/{app_name}/machines/{machine_id}/restart timeout",
            {"type": "string", "pattern": r"^([0-9]*|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"},
            "FLY_API.md 1.5: a Go duration or a number of seconds (empty: the default)",
        ),
        RequestRule(
            "get /apps/{app_name}/machines limit",
            {"type": "integer", "minimum": 1, "maximum": 1000},
            "FLY_API.md 1.1: limit is 1..1000",
        ),
        RequestRule(
            "get /apps/{app_name}/machines include_leases",
            {"type": "boolean"},
            "FLY_API.md 1.1: include_leases is a boolean",
        ),
        RequestRule(
            "get /apps/{app_name}/machines cursor",
            {"not": {}},
            "FLY_API.md 1.1: a cursor is a token the server issued; not generated",
        ),
        RequestRule(
            "get /apps/{app_name}/machines/{machine_id} include_leases",
            {"type": "boolean"},
            "FLY_API.md 1.2: include_leases is a boolean",
        ),
    )


# Request bodies the saved spec leaves out.
EXTRA_REQUEST_BODIES: Mapping[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("post", "/apps/{app_name}/machines/{machine_id}/metadata/{key}"): (
        {
            "type": "object",
            "required": ["value"],
            "properties": {"value": {"type": "string"}},
        },
        "FLY_API.md 1.8: set metadata takes {value}",
    ),
}

# Operations the emulator does not model: they answer 501 "not emulated" (tested in
# tests/emulator); fuzzing them would only count 5xx answers.
NOT_FUZZED: Mapping[str, str] = dict.fromkeys(
    (
        "Machines_exec",
        "Machines_list_processes",
        "Machines_signal",
        "Secret_create",
        "Secret_generate",
        "Tokens_request_Kms",
        "Tokens_request_OIDC",
    ),
    "routes.py NOT_EMULATED: answers 501 {error: not emulated: <operation>}",
)

_NULLABLE_STRING: dict[str, Any] = {"type": "string", "nullable": True}

# Operations the emulator serves that the saved spec lacks (SPEC-NEW), fuzzed like the others.
EXTRA_OPERATIONS: Mapping[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("patch", "/apps/{app_name}/machines/{machine_id}/metadata"): (
        {
            "operationId": "Machines_patch_metadata",
            "parameters": [
                {"name": "app_name", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "machine_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["metadata"],
                            "properties": {
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": _NULLABLE_STRING,
                                },
                                "machine_version": _NULLABLE_STRING,
                            },
                        }
                    }
                },
            },
            "responses": {"204": {"description": "updated"}},
        },
        "FLY_API.md 1.8: SPEC-NEW PATCH metadata (null or empty removes a key)",
    ),
    ("get", "/apps/{app_name}/machines/{machine_id}/metadata/{key}"): (
        {
            "operationId": "Machines_show_metadata_key",
            "parameters": [
                {"name": "app_name", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "machine_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "the value",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["value"],
                                "additionalProperties": False,
                                "properties": {"value": {"type": "string"}},
                            }
                        }
                    },
                }
            },
        },
        "FLY_API.md 1.8: SPEC-NEW GET one metadata key",
    ),
    ("post", "/apps/{app_name}/secrets"): (
        {
            "operationId": "Secrets_update",
            "parameters": [
                {"name": "app_name", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["values"],
                            "properties": {
                                "values": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "additionalProperties": False,
                                    "properties": {
                                        "DATABASE_URL": _NULLABLE_STRING,
                                        "API_TOKEN": _NULLABLE_STRING,
                                    },
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "the secrets and their new version",
                    "content": {"application/json": {"schema": APP_SECRETS}},
                }
            },
        },
        "FLY_API.md 1.3: SPEC-NEW AppSecretsUpdateRequest {values}; secret names must be "
        "environment variable names (secrets.py), so two such names are generated",
    ),
}


BODY_OPTIONAL: Mapping[str, str] = {
    "Machines_create_lease": "FLY_API.md 1.7: fly-go sends ?ttl= and no body",
}

# Answers that are not refusals of the request but the API's state, so a valid request may get
# them; added to schemathesis' positive_data_acceptance statuses.
STATE_STATUSES: Mapping[str, str] = {
    "408": "FLY_API.md 1.6: /wait times out when the state is not reached",
    "412": "FLY_API.md 3.2: the machine's state forbids the action (start a started machine...)",
}


def _ref_schema(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _nullable_copy(node: Any, prefix: str) -> Any:
    """A request-side copy of a schema tree: refs point into the copy, properties accept null."""
    if isinstance(node, dict):
        out = {k: _nullable_copy(v, prefix) for k, v in node.items()}
        all_of = out.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
            return dict(all_of[0])  # `{type: object, allOf: [ref]}` is just the ref (Duration)
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out["$ref"] = "#/components/schemas/" + prefix + _ref_schema(ref)
        if out.get("additionalProperties") is False:
            del out["additionalProperties"]  # Go ignores unknown keys in requests
        if out.get("type") == "integer":  # Go's ints are 64-bit: larger numbers are refused
            out.setdefault("minimum", -(2**63))
            out.setdefault("maximum", 2**63 - 1)
        if isinstance(out.get("properties"), dict):
            out["properties"] = {k: _nullable(v) for k, v in out["properties"].items()}
        if out.get("type") == "array" and isinstance(out.get("items"), dict):
            out["items"] = _nullable(out["items"])  # Go: a null element is the zero value
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = _nullable(out["additionalProperties"])  # map values
        return out
    if isinstance(node, list):
        return [_nullable_copy(v, prefix) for v in node]
    return node


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    """Go reads ``null`` as "absent" for every field (FLY_API.md 3.1 has no nulls either way)."""
    if "$ref" in prop or "oneOf" in prop or "allOf" in prop:
        return {"anyOf": [{"type": "object", "nullable": True, "enum": [None]}, prop]}
    if "enum" in prop:
        return {**prop, "nullable": True, "enum": [*prop["enum"], None]}
    return {**prop, "nullable": True}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in prop and len(prop["anyOf"]) == 2 and prop["anyOf"][0].get("enum") == [None]:
        return dict(prop["anyOf"][1])
    out = {k: v for k, v in prop.items() if k != "nullable"}
    if "enum" in out:
        out["enum"] = [v for v in out["enum"] if v is not None]
    return out


REQUEST_PREFIX = "request."


def load_fuzz_spec(seeded: Seeded) -> dict[str, Any]:
    """The strict spec with every documented deviation applied, for schemathesis.

    Responses: OFF_SPEC_RESPONSES replace the saved shapes; every operation may answer an error
    envelope (ERROR_WHY) via ``default``.  Requests: bodies use a nullable copy of the schemas
    (Go's null) tightened by :func:`request_rules`; path parameters point at ``seeded``.
    """
    spec = load_strict_spec()
    schemas = spec["components"]["schemas"]
    spec["servers"] = [{"url": "/v1"}]
    request_copy = {
        REQUEST_PREFIX + name: _nullable_copy(schema, REQUEST_PREFIX)
        for name, schema in schemas.items()
    }
    schemas.update(request_copy)
    query_rules: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for rule in request_rules(seeded):
        if " " in rule.where:
            method, path, name = rule.where.split(" ")
            query_rules[(method, path, name)] = rule.schema
            continue
        component, prop = _split(rule.where)
        target = schemas[REQUEST_PREFIX + component]
        if prop:
            rule_schema = dict(rule.schema)
            if rule_schema.get("type") == "integer":
                rule_schema.setdefault("maximum", 2**63 - 1)  # Go's ints are 64-bit
            target["properties"][prop] = _nullable(rule_schema)
        elif "required" in rule.schema:
            target["required"] = list(rule.schema["required"])
        else:
            schemas[REQUEST_PREFIX + component] = dict(rule.schema)
    for (method, template), (operation, _why) in EXTRA_OPERATIONS.items():
        spec["paths"].setdefault(template, {})[method] = copy.deepcopy(operation)
    for template in list(spec["paths"]):
        item = spec["paths"][template]
        for method in [m for m, op in item.items() if isinstance(op, dict)]:
            if item[method].get("operationId") in NOT_FUZZED:
                del item[method]
        if not any(m in item for m in ("get", "post", "put", "patch", "delete")):
            del spec["paths"][template]

    def strict_items(node: Any) -> None:
        """A null array element is a zero struct, which lacks the struct's required fields."""
        if isinstance(node, dict):
            items = node.get("items")
            if isinstance(items, dict) and "anyOf" in items:
                ref = items["anyOf"][1].get("$ref", "")
                if schemas.get(_ref_schema(ref), {}).get("required"):
                    node["items"] = _not_null(items)
            for value in node.values():
                strict_items(value)
        elif isinstance(node, list):
            for value in node:
                strict_items(value)

    for name in list(schemas):
        target = schemas[name]
        if name.startswith(REQUEST_PREFIX):
            strict_items(target)
        if name.startswith(REQUEST_PREFIX) and isinstance(target.get("properties"), dict):
            for prop in target.get("required", []):  # a required field cannot be null
                target["properties"][prop] = _not_null(target["properties"][prop])
    pinned = {
        "app_name": [seeded.app],
        "machine_id": [seeded.machine_id],
        "volume_id": [seeded.volume_id],
    }
    for template, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in pinned:
                    param["schema"] = {"type": "string", "enum": pinned[param["name"]]}
                query_schema = query_rules.get((method, template, param["name"]))
                if query_schema is not None and param["in"] == "query":
                    param["schema"] = dict(query_schema)
            op["parameters"] = [
                p for p in op.get("parameters", []) if p.get("schema") != {"not": {}}
            ]
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is not None and "$ref" in content.get("schema", {}):
                name = _ref_schema(content["schema"]["$ref"])
                content["schema"] = {"$ref": "#/components/schemas/" + REQUEST_PREFIX + name}
            if op.get("operationId") in BODY_OPTIONAL and "requestBody" in op:
                op["requestBody"]["required"] = False
            body = op.get("requestBody", {})
            if not body.get("required", False) and "content" in body:
                # Go decodes a `null` body into an empty struct: an optional body may be null.
                media = body["content"]["application/json"]
                media["schema"] = _nullable(media["schema"])
            extra = EXTRA_REQUEST_BODIES.get((method, template))
            if extra is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": extra[0]}},
                }
            responses = op.setdefault("responses", {})
            for (m, t, status), off in OFF_SPEC_RESPONSES.items():
                if (m, t) == (method, template) and status is not None:
                    responses[str(status)] = {
                        "description": off.why,
                        "content": {"application/json": {"schema": dict(off.schema)}},
                    }
            responses["default"] = {
                "description": ERROR_WHY,
                "content": {"application/json": {"schema": ANY_ERROR}},
            }
    return spec


def _split(where: str) -> tuple[str, str]:
    """``fly.MachineGuest.cpus`` -> (``fly.MachineGuest``, ``cpus``); ``X`` -> (``X``, "")."""
    namespace = "fly." if where.startswith("fly.") else ""
    component, _, prop = where.removeprefix(namespace).partition(".")
    return namespace + component, prop
