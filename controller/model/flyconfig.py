"""Fly's machine config (``fly.MachineConfig`` and the ``fly.*`` objects under it), validated.

Field names are the spec's (``controller/emulator/spec/fly-machines-openapi.json``). Every object
forbids unknown keys, so a typo such as ``memry_mb`` is an error with a field path instead of being
silently ignored. Fields we do not model yet can still be sent through the **escape hatch**
``x_passthrough``, accepted on every config object (the config itself, ``guest``, each service,
port, check...): a mapping merged verbatim into that object of the request Fly receives::

    config:
      x_passthrough:            # sent as config.containers; compared like any other field
        containers: [{name: app, image: registry.fly.io/acme:v1}]
      services:
        - internal_port: 8080
          x_passthrough: {new_fly_field: true}

A passthrough key may not name a modelled field (set that field directly instead).  Passthrough
maps merge like any other map between ``defaults.config`` and a group's config.

Also here: Go duration parsing and formatting (Fly's durations are Go ``time.Duration`` values).
Pure: no I/O.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

from controller.model.actual import RECONCILER_PREFIX

__all__ = [
    "FLY_METADATA_PREFIX",
    "DNSConfig",
    "DnsForwardRule",
    "DnsOption",
    "Duration",
    "EnvFrom",
    "HTTPOptions",
    "HTTPResponseOptions",
    "MachineCheck",
    "MachineConfig",
    "MachineFile",
    "MachineGuest",
    "MachineHTTPHeader",
    "MachineInit",
    "MachineMetrics",
    "MachineMount",
    "MachinePort",
    "MachineProcess",
    "MachineRestart",
    "MachineSecret",
    "MachineService",
    "MachineServiceConcurrency",
    "NonNegative",
    "ProxyProtoOptions",
    "Static",
    "StopConfig",
    "StrictModel",
    "TLSOptions",
    "format_go_duration",
    "parse_go_duration",
]

FLY_METADATA_PREFIX = "fly_"
"""Metadata keys Fly and flyctl own (``fly_platform_version``, ``fly_process_group``...)."""


# ------------------------------------------------------------------------------ durations
# Fly's config durations are Go ``time.Duration`` values: fly-go ``duration.go`` parses a
# string with ``time.ParseDuration`` (or a number of nanoseconds) and marshals ``d.String()``.

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Parse a Go duration string (``"1m30s"``, ``"1.5s"``, ``"500ms"``) into nanoseconds.

    Raises ``ValueError`` for anything ``time.ParseDuration`` would reject.
    """
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h)")
        try:
            total += Decimal(match.group(1)) * _NS_PER_UNIT[match.group(2)]
        except InvalidOperation:  # pragma: no cover - the regex admits only decimal numbers
            raise ValueError(f"invalid duration {text!r}") from None
        pos = match.end()
    return sign * int(total)


def _frac(value: int, digits: int) -> str:
    """``value / 10**digits`` with trailing fractional zeros dropped (Go's ``fmtFrac``)."""
    whole, frac = divmod(value, 10**digits)
    if frac == 0:
        return str(whole)
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


def format_go_duration(ns: int) -> str:
    """Format nanoseconds exactly like Go's ``time.Duration.String()`` (``"1m30s"``, ``"0s"``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_frac(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_frac(u, 6)}ms"
    seconds, frac_ns = divmod(u, 1_000_000_000)
    out = _frac((seconds % 60) * 1_000_000_000 + frac_ns, 9) + "s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours:
            out = f"{hours}h{out}"
    return sign + out


def _check_duration(value: str) -> str:
    if parse_go_duration(value) < 0:
        raise ValueError("a duration cannot be negative")
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A Go duration string as Fly accepts it (``"10s"``, ``"1m30s"``, ``"500ms"``)."""


# ------------------------------------------------------------------------------ base classes


class StrictModel(BaseModel):
    """Frozen, strict (no silent coercion), and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _FlyObject(StrictModel):
    """A ``fly.*`` config object: modelled fields plus the ``x_passthrough`` escape hatch."""

    x_passthrough: dict[str, JsonValue] | None = Field(
        default=None,
        description="Fields not modelled yet, merged verbatim into this object of the request.",
    )

    @model_validator(mode="after")
    def _passthrough_does_not_shadow(self) -> _FlyObject:
        if self.x_passthrough:
            modelled = sorted(set(self.x_passthrough) & set(type(self).model_fields))
            if modelled:
                raise ValueError(
                    f"x_passthrough may not set modelled field(s) {', '.join(modelled)}: "
                    "set them directly"
                )
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON object Fly receives: set fields only, ``x_passthrough`` merged in."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name == "x_passthrough":
                continue
            value = getattr(self, name)
            if value is not None:
                out[name] = _wire(value)
        if self.x_passthrough:
            out.update(self.x_passthrough)
        return out


def _wire(value: Any) -> Any:
    if isinstance(value, _FlyObject):
        return value.to_wire()
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------ fly.* objects

Port = Annotated[int, Field(ge=1, le=65535)]
NonNegative = Annotated[int, Field(ge=0)]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_names(env: dict[str, str] | None) -> dict[str, str] | None:
    for key in env or {}:
        if not _ENV_NAME.match(key):
            raise ValueError(
                f"invalid environment variable name {key!r}: "
                "use letters, digits and '_', not starting with a digit"
            )
    return env


EnvMap = Annotated[dict[str, str], AfterValidator(_env_names)]


class MachineGuest(_FlyObject):
    """``fly.MachineGuest``: the VM size."""

    cpu_kind: Literal["shared", "performance"] | None = None
    cpus: Annotated[int, Field(ge=1)] | None = None
    memory_mb: Annotated[int, Field(ge=1)] | None = None
    gpus: NonNegative | None = None
    gpu_kind: str | None = None
    host_dedication_id: str | None = None
    kernel_args: list[str] | None = None


class MachineHTTPHeader(_FlyObject):
    """``fly.MachineHTTPHeader``: one header sent by an http check."""

    name: str
    values: list[str] | None = None


class MachineCheck(_FlyObject):
    """``fly.MachineCheck``: a health check (top-level ``checks.<name>`` or a service's)."""

    type: Literal["tcp", "http"] | None = None
    port: Port | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    grace_period: Duration | None = None
    method: str | None = None
    path: str | None = None
    protocol: Literal["http", "https"] | None = None
    tls_server_name: str | None = None
    tls_skip_verify: bool | None = None
    headers: list[MachineHTTPHeader] | None = None
    kind: Literal["informational", "readiness"] | None = None


class TLSOptions(_FlyObject):
    """``fly.TLSOptions``."""

    alpn: list[str] | None = None
    versions: list[str] | None = None
    default_self_signed: bool | None = None


class HTTPResponseOptions(_FlyObject):
    """``fly.HTTPResponseOptions``."""

    headers: dict[str, JsonValue] | None = None
    pristine: bool | None = None


class HTTPOptions(_FlyObject):
    """``fly.HTTPOptions``."""

    compress: bool | None = None
    h2_backend: bool | None = None
    headers_read_timeout: NonNegative | None = None
    idle_timeout: NonNegative | None = None
    response: HTTPResponseOptions | None = None


class ProxyProtoOptions(_FlyObject):
    """``fly.ProxyProtoOptions``."""

    version: str | None = None


class MachinePort(_FlyObject):
    """``fly.MachinePort``: a public port (or port range) of a service."""

    port: Port | None = None
    start_port: Port | None = None
    end_port: Port | None = None
    handlers: list[str] | None = None
    force_https: bool | None = None
    tls_options: TLSOptions | None = None
    http_options: HTTPOptions | None = None
    proxy_proto_options: ProxyProtoOptions | None = None

    @model_validator(mode="after")
    def _port_or_range(self) -> MachinePort:
        if self.port is None and (self.start_port is None or self.end_port is None):
            raise ValueError("set either port, or start_port and end_port")
        if self.port is not None and (self.start_port is not None or self.end_port is not None):
            raise ValueError("set either port, or start_port and end_port, not both")
        return self


class MachineServiceConcurrency(_FlyObject):
    """``fly.MachineServiceConcurrency``."""

    type: Literal["connections", "requests"] | None = None
    hard_limit: NonNegative | None = None
    soft_limit: NonNegative | None = None


def _autostop(value: object) -> object:
    # The spec: autostop "accepts a string (new format) or a boolean (old format)", true being
    # "stop" and false "off"; YAML 1.1 also reads a bare ``off`` as false.  We send the string.
    if value is True:
        return "stop"
    if value is False:
        return "off"
    return value


class MachineService(_FlyObject):
    """``fly.MachineService``: how Fly Proxy routes to this machine."""

    protocol: Literal["tcp", "udp"] | None = None
    internal_port: Port | None = None
    ports: list[MachinePort] | None = None
    checks: list[MachineCheck] | None = None
    concurrency: MachineServiceConcurrency | None = None
    autostop: Annotated[Literal["off", "stop", "suspend"], BeforeValidator(_autostop)] | None = None
    autostart: bool | None = None
    min_machines_running: NonNegative | None = None
    force_instance_key: str | None = None
    force_instance_description: str | None = None


class MachineMount(_FlyObject):
    """``fly.MachineMount``: a volume mount.

    ``name``, ``encrypted`` and ``size_gb`` are not accepted: they are attributes of the volume,
    which Fly reports back in the machine config (TFFLY #52), not settings of the mount.
    """

    volume: str
    path: str
    add_size_gb: NonNegative | None = None
    size_gb_limit: NonNegative | None = None
    extend_threshold_percent: Annotated[int, Field(ge=0, le=100)] | None = None


def _restart_policy(value: object) -> object:
    # YAML 1.1 reads a bare ``policy: no`` as false; "no" is what was meant.
    return "no" if value is False else value


class MachineRestart(_FlyObject):
    """``fly.MachineRestart``: what flyd does when the main process exits."""

    policy: (
        Annotated[
            Literal["no", "always", "on-failure", "spot-price"],
            BeforeValidator(_restart_policy),
        ]
        | None
    ) = None
    max_retries: NonNegative | None = None
    gpu_bid_price: Annotated[float, Field(ge=0)] | None = None


class MachineInit(_FlyObject):
    """``fly.MachineInit``: overrides of the image's entrypoint/command."""

    exec: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    kernel_args: list[str] | None = None
    swap_size_mb: NonNegative | None = None
    tty: bool | None = None


class EnvFrom(_FlyObject):
    """``fly.EnvFrom``: an env var filled from a machine field."""

    env_var: str
    field_ref: Literal["id", "version", "app_name", "private_ip", "region", "image"]


class MachineSecret(_FlyObject):
    """``fly.MachineSecret``: an app secret exposed to a process."""

    env_var: str
    name: str | None = None


class MachineProcess(_FlyObject):
    """``fly.MachineProcess``: one extra process of the machine."""

    exec: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    env: EnvMap | None = None
    env_from: list[EnvFrom] | None = None
    secrets: list[MachineSecret] | None = None
    ignore_app_secrets: bool | None = None


class MachineFile(_FlyObject):
    """``fly.File``: a file written into the machine (``raw_value`` is base64, sensitive)."""

    guest_path: str
    raw_value: str | None = None
    secret_name: str | None = None
    mode: Annotated[int, Field(ge=0, le=0o7777)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MachineFile:
        if not self.guest_path.startswith("/"):
            raise ValueError("guest_path must be an absolute path")
        if (self.raw_value is None) == (self.secret_name is None):
            raise ValueError("set exactly one of raw_value or secret_name")
        return self


class StopConfig(_FlyObject):
    """``fly.StopConfig``: the signal and grace period used to stop the machine."""

    signal: Annotated[str, Field(pattern=r"^SIG[A-Z0-9]+$")] | None = None
    timeout: Duration | None = None


class DnsOption(_FlyObject):
    """``fly.dnsOption``."""

    name: str
    value: str | None = None


class DnsForwardRule(_FlyObject):
    """``fly.dnsForwardRule``."""

    basename: str
    addr: str


class DNSConfig(_FlyObject):
    """``fly.DNSConfig``."""

    skip_registration: bool | None = None
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[DnsOption] | None = None
    dns_forward_rules: list[DnsForwardRule] | None = None
    hostname: str | None = None
    hostname_fqdn: str | None = None


class MachineMetrics(_FlyObject):
    """``fly.MachineMetrics``: where Fly scrapes Prometheus metrics."""

    port: Port | None = None
    path: str | None = None
    https: bool | None = None


class Static(_FlyObject):
    """``fly.Static``: static files served by Fly Proxy."""

    guest_path: str
    url_prefix: str
    tigris_bucket: str | None = None
    index_document: str | None = None


def _user_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    for key in metadata or {}:
        if key.startswith((RECONCILER_PREFIX, FLY_METADATA_PREFIX)):
            raise ValueError(
                f"metadata key {key!r} is reserved: keys starting with "
                f"{RECONCILER_PREFIX!r} belong to the reconciler, {FLY_METADATA_PREFIX!r} to Fly"
            )
    return metadata


_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _image(value: str) -> str:
    if not value or value != value.strip() or any(c.isspace() for c in value):
        raise ValueError("an image reference cannot be empty or contain whitespace")
    if "@" in value and not _DIGEST.search(value):
        raise ValueError("an image digest must look like @sha256:<64 hex digits>")
    return value


class MachineConfig(_FlyObject):
    """``fly.MachineConfig``, the fields the reconciler manages.

    Not modelled (use ``x_passthrough``): ``containers``, ``volumes`` (restricted to some orgs),
    ``size`` and ``disable_machine_autostart`` (deprecated by Fly in favour of ``guest`` and
    ``services[].autostart``).
    """

    image: Annotated[str, AfterValidator(_image)] | None = None
    guest: MachineGuest | None = None
    env: EnvMap | None = None
    services: list[MachineService] | None = None
    checks: dict[str, MachineCheck] | None = None
    mounts: list[MachineMount] | None = None
    restart: MachineRestart | None = None
    init: MachineInit | None = None
    auto_destroy: bool | None = None
    metadata: Annotated[dict[str, str], AfterValidator(_user_metadata)] | None = None
    processes: list[MachineProcess] | None = None
    files: list[MachineFile] | None = None
    stop_config: StopConfig | None = None
    dns: DNSConfig | None = None
    schedule: Literal["hourly", "daily", "weekly", "monthly"] | None = None
    standbys: list[str] | None = None
    metrics: MachineMetrics | None = None
    statics: list[Static] | None = None
