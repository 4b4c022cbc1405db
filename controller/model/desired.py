"""Desired state: the validated, frozen shape of one desired-state file (one Fly app).

Two layers live here:

* the **file models** (:class:`DesiredFile` and everything under it) mirror the YAML exactly:
  ``app``, ``defaults.config``, ``groups.<name>.{regions, config, update}``, ``prune``,
  ``detect_only``, ``max_destroy``, ``max_create``.  Every model forbids unknown keys.
  ``config`` is Fly's
  machine config, modelled in :mod:`controller.model.flyconfig` (with its ``x_passthrough``
  escape hatch for fields not modelled yet); its names are re-exported here.
* the **resolved models** (:class:`DesiredApp`, :class:`DesiredGroup`) are what the planner
  consumes: ``defaults.config`` deep-merged under every group's config (maps merge
  recursively, lists replace), with the cross-field rules checked (an image is required, and
  ``memory_mb`` for any guest but shared-cpu-1x).

Nothing here performs I/O; :mod:`controller.loading.loader` reads files, resolves ``${ENV:..}`` and
``${FILE:..}`` references and maps validation errors back to YAML lines.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from controller.core import defaults
from controller.core.redaction import env_is_secret
from controller.model.flyconfig import (
    FLY_METADATA_PREFIX,
    DNSConfig,
    DnsForwardRule,
    DnsOption,
    EnvFrom,
    HTTPOptions,
    HTTPResponseOptions,
    MachineCheck,
    MachineConfig,
    MachineFile,
    MachineGuest,
    MachineHTTPHeader,
    MachineInit,
    MachineMetrics,
    MachineMount,
    MachinePort,
    MachineProcess,
    MachineRestart,
    MachineSecret,
    MachineService,
    MachineServiceConcurrency,
    NonNegative,
    ProxyProtoOptions,
    Static,
    StopConfig,
    StrictModel,
    TLSOptions,
    format_go_duration,
    parse_go_duration,
)
from controller.model.regions import DEPRECATED_REGIONS, FLY_REGIONS, REGIONS_AS_OF
from controller.model.suggest import did_you_mean, field_suggestion

__all__ = [
    "DEFAULT_MAX_CREATE",
    "DEFAULT_MAX_DESTROY",
    "DEFAULT_MAX_UNAVAILABLE",
    "DEFAULT_SMOKE_PERIOD_S",
    "DEFAULT_WAIT_TIMEOUT_S",
    "FLY_METADATA_PREFIX",
    "DNSConfig",
    "Defaults",
    "DesiredApp",
    "DesiredFile",
    "DesiredGroup",
    "DesiredStateInvalid",
    "DnsForwardRule",
    "DnsOption",
    "EnvFrom",
    "GroupSpec",
    "HTTPOptions",
    "HTTPResponseOptions",
    "Issue",
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
    "ProxyProtoOptions",
    "Static",
    "StopConfig",
    "TLSOptions",
    "UpdatePolicy",
    "build_app",
    "deep_merge",
    "format_go_duration",
    "image_problem",
    "issues_from",
    "parse_app",
    "parse_go_duration",
]

DEFAULT_MAX_UNAVAILABLE = 0.33
DEFAULT_WAIT_TIMEOUT_S = 300.0
DEFAULT_SMOKE_PERIOD_S = defaults.SMOKE_SECONDS
DEFAULT_MAX_DESTROY = 0.5
#: Creates one plan may hold before it is refused: far above a normal rollout or a new region,
#: far below a typo such as ``ams: 10000``.  Raise it in the file for a genuinely large app.
DEFAULT_MAX_CREATE = 100


def _seconds(value: object) -> object:
    """Durations in policy fields: a Go duration string or a plain number of seconds."""
    if isinstance(value, bool):
        return value  # let the float validator reject it
    if isinstance(value, str):
        return parse_go_duration(value) / 1e9
    return value


# ------------------------------------------------------------------------------ file models

_APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_GROUP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
_REGION = re.compile(r"^[a-z]{3}$")


def _app_name(value: str) -> str:
    if not _APP_NAME.match(value):
        raise ValueError(
            f"invalid app name {value!r}: lowercase letters, digits and '-', at most 63 characters"
        )
    return value


def _org_slug(value: str | None) -> str | None:
    if value is not None and not _APP_NAME.match(value):
        raise ValueError(
            f"invalid org slug {value!r}: lowercase letters, digits and '-' (see `fly orgs list`)"
        )
    return value


def _group_name(value: str) -> str:
    if not _GROUP_NAME.match(value):
        raise ValueError(
            f"invalid group name {value!r}: start with a lowercase letter, then lowercase "
            "letters, digits or '-', at most 32 characters, not ending with '-'"
        )
    return value


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(
            f"invalid region {value!r}: Fly region codes are 3 lowercase letters"
            + did_you_mean(value.lower(), FLY_REGIONS)
        )
    return value


GroupName = Annotated[str, AfterValidator(_group_name)]
Region = Annotated[str, AfterValidator(_region)]


def _max_unavailable(value: object) -> float | int:
    ok_int = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ok_frac = isinstance(value, float) and 0.0 < value < 1.0
    if not (ok_int or ok_frac):
        raise ValueError(
            "max_unavailable must be a fraction of the group between 0 and 1 (e.g. 0.25) "
            "or an absolute count >= 1 (e.g. 2)"
        )
    return value  # type: ignore[return-value]  # narrowed above


_VOLUME_NAME = re.compile(r"^[a-z0-9_]{1,30}$")


def _volume_name(value: str) -> str:
    if not _VOLUME_NAME.match(value):
        raise ValueError(
            f"invalid volume name {value!r}: lowercase letters, digits and underscores, "
            "at most 30 characters"
        )
    return value


class VolumeSpec(StrictModel):
    """The volume each machine of a group gets (Fly volumes attach to one machine)."""

    name: Annotated[str, AfterValidator(_volume_name)]
    size_gb: Annotated[int, Field(ge=1, le=500)] = 1
    encrypted: bool | None = None


class VolumeMount(StrictModel):
    """``mounts[]`` of a group: a volume per machine, made in the machine's region."""

    path: Annotated[str, Field(pattern=r"^/")]
    volume: VolumeSpec


RunState = Literal["started", "stopped"]
"""A group's desired run state (``state:``)."""


def autostopped(config: MachineConfig) -> bool:
    """Fly stops and starts this group's machines itself (a service with autostop on)."""
    return any(s.autostop in ("stop", "suspend") for s in config.services or ())


class UpdatePolicy(StrictModel):
    """Rolling-update policy of a group (applied by the executor)."""

    max_unavailable: Annotated[float | int, BeforeValidator(_max_unavailable)] = (
        DEFAULT_MAX_UNAVAILABLE
    )
    """A fraction in (0, 1) of the group, or an absolute count >= 1."""
    wait_timeout: Annotated[float, BeforeValidator(_seconds), Field(gt=0)] = DEFAULT_WAIT_TIMEOUT_S
    """Seconds to wait for an updated machine to run and pass its checks (``"5m"`` in YAML)."""
    smoke_period: Annotated[float | None, BeforeValidator(_seconds), Field(ge=0)] = None
    """How long a machine *without* checks must stay up after its update before the rollout
    counts it healthy (``"10s"``; ``0``: no smoke period).  Unset: the controller's default,
    :data:`DEFAULT_SMOKE_PERIOD_S` (flyctl's 10 s), which the executor settings may lower for
    tests."""

    def batch_size(self, group_size: int) -> int:
        """How many machines of a group of ``group_size`` may be updated at once (>= 1)."""
        if isinstance(self.max_unavailable, int):
            return max(1, self.max_unavailable)
        return max(1, int(self.max_unavailable * group_size))


class GroupSpec(StrictModel):
    """``groups.<name>`` as written in the file."""

    regions: dict[Region, NonNegative] = Field(default_factory=dict)
    config: MachineConfig = Field(default_factory=MachineConfig)
    update: UpdatePolicy = Field(default_factory=UpdatePolicy)
    state: RunState | None = None
    """``started`` or ``stopped`` (workers, standby pools); unset: leave the run state alone
    (autostop-managed groups must leave it unset: Fly starts and stops those)."""
    restart_generation: Annotated[int, Field(ge=0)] | None = None
    """Bump it to restart every machine of the group once (a rolling restart in the update
    window, health-gated); the applied value is kept in each machine's metadata."""
    mounts: Annotated[list[VolumeMount], Field(max_length=1)] = Field(default_factory=list)
    """A volume per machine (Fly machines mount at most one): created in the slot's region and
    attached when the machine is created; never destroyed unless ``prune_volumes: true``."""


class Defaults(StrictModel):
    """``defaults``: deep-merged under every group's config."""

    config: MachineConfig = Field(default_factory=MachineConfig)


class DesiredFile(StrictModel):
    """One desired-state file, as written."""

    app: Annotated[str, AfterValidator(_app_name)]
    org: Annotated[str | None, AfterValidator(_org_slug)] = None
    """The Fly organization slug: when set, ``apply`` creates the app if it does not exist."""
    defaults: Defaults = Field(default_factory=Defaults)
    groups: dict[GroupName, GroupSpec] = Field(default_factory=dict)
    prune: bool = False
    """Destroy managed machines whose group is no longer declared (else: report them)."""
    detect_only: bool = False
    """Report drift, never change anything."""
    max_destroy: Annotated[float, Field(ge=0.0, le=1.0)] = DEFAULT_MAX_DESTROY
    """Refuse a plan destroying more than this fraction of the app's managed machines."""
    max_create: Annotated[int, Field(ge=0)] = DEFAULT_MAX_CREATE
    """Refuse a plan creating more than this many machines at once."""
    paused: bool = False
    """Plan and change nothing for this app (an operator is fixing it by hand)."""
    prune_volumes: bool = False
    """Destroy the volumes of the machines the reconciler destroys (else they are kept)."""
    sensitive: list[str] = Field(default_factory=list)
    """Env names whose values are secret although written literally (shown as (sensitive))."""
    allow_latest: bool = False
    """Accept images without a tag or digest (or tagged ``latest``): a new push of the same
    tag never rolls out, because every later plan sees the same reference."""
    allow_unknown_regions: bool = False
    """Accept region codes missing from :data:`~controller.model.regions.FLY_REGIONS`."""


# ------------------------------------------------------------------------------ resolved models


class DesiredGroup(StrictModel):
    """A group after ``defaults.config`` was merged under its config."""

    name: GroupName
    regions: dict[Region, NonNegative]
    config: MachineConfig
    update: UpdatePolicy
    state: RunState | None = None
    """The run state the group's machines are kept in, or None (left alone)."""
    restart_generation: int | None = None
    """See :attr:`GroupSpec.restart_generation`."""
    mounts: tuple[VolumeMount, ...] = ()
    """See :attr:`GroupSpec.mounts`."""
    shown_env: frozenset[str] = frozenset()
    """Env names whose values plans may show (literal in the file and not secret by
    :func:`~controller.core.redaction.env_is_secret`); any other env value is sensitive."""

    @property
    def size(self) -> int:
        """Machines the group should have, all regions together."""
        return sum(self.regions.values())


class DesiredApp(StrictModel):
    """One app's desired state, ready for :func:`controller.planning.plan.plan`."""

    app: str
    groups: tuple[DesiredGroup, ...]
    """In file order (the order the executor rolls them)."""
    org: str | None = None
    """The org slug to create the app in when it is missing (``org:``), or None."""
    prune: bool = False
    detect_only: bool = False
    max_destroy: float = DEFAULT_MAX_DESTROY
    max_create: int = DEFAULT_MAX_CREATE
    prune_volumes: bool = False
    """Destroy a destroyed machine's volumes too (``prune_volumes: true``)."""
    source: str | None = None
    """The file it came from, for messages."""
    paused: str | None = None
    """Why nothing may be planned for this app now (``paused: true`` in the file, a
    ``paused/<app>`` marker, ``--pause-app``), or None when it is not paused."""
    only_groups: tuple[str, ...] | None = None
    """Targeting (``--group``): only these groups' actions are planned; None: every group."""

    def group(self, name: str) -> DesiredGroup | None:
        """The group called ``name``, or None."""
        for group in self.groups:
            if group.name == name:
                return group
        return None


# ------------------------------------------------------------------------------ building


class Issue(NamedTuple):
    """One validation problem: where (a path into the file's data) and what."""

    loc: tuple[str | int, ...]
    msg: str


class DesiredStateInvalid(ValueError):
    """A desired-state document failed validation; ``issues`` say where and why."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(f"{_dotted(i.loc)}: {i.msg}" for i in issues))
        self.issues = tuple(issues)


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def issues_from(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[Issue]:
    """Pydantic errors as :class:`Issue` values (messages never include the input value)."""
    out = []
    for err in error.errors(include_input=False, include_url=False):
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field" + field_suggestion(DesiredFile, (*prefix, *err["loc"]))
        elif kind == "missing":
            msg = "required field missing"
        elif kind == "string_type" and "env" in err["loc"]:
            msg = "env values must be strings: quote numbers and booleans"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        out.append(Issue(prefix + tuple(err["loc"]), msg))
    return out


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: maps merge recursively, anything else (lists too) replaces."""
    out = dict(base)
    for key, value in override.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(below, value)
        else:
            out[key] = value
    return out


_DEFAULT_GUEST = ("shared", 1)


def image_problem(ref: str) -> str | None:
    """Why an image reference is unsafe to reconcile (no tag nor digest, or ``latest``), else
    None.  Fly resolves such a reference at create time; a later push of the same tag changes
    nothing in the config, so no plan ever shows it and it never rolls out."""
    name, at, _digest = ref.partition("@")
    if at:
        return None
    last = name.rsplit("/", 1)[-1]
    _, colon, tag = last.partition(":")
    if not colon:
        return (
            f"image {ref!r} has no tag or digest: pin a tag (:v42) or a digest (@sha256:...), "
            "or set allow_latest: true"
        )
    if tag == "latest":
        return (
            f"image {ref!r} is tagged latest: a new push never rolls out; pin a tag or a "
            "digest, or set allow_latest: true"
        )
    return None


def _env_entries(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Every (name, value) of a wire config's env maps (the config's, processes', containers')."""
    maps = [config.get("env")]
    for key in ("processes", "containers"):
        items = config.get(key)
        if isinstance(items, list):
            maps.extend(item.get("env") for item in items if isinstance(item, Mapping))
    return [(k, v) for env in maps if isinstance(env, Mapping) for k, v in env.items()]


def _shown_env(
    config: MachineConfig, *, referenced: frozenset[str], listed: frozenset[str]
) -> frozenset[str]:
    """Env names whose values a plan may show: the one rule of :mod:`controller.core.redaction`,
    applied to every env map of the config; a name secret in one map is secret in all."""
    entries = _env_entries(config.to_wire())
    secret = {
        name
        for name, value in entries
        if env_is_secret(
            name,
            value,
            referenced=name in referenced or (isinstance(value, str) and value.startswith("${")),
            listed=name in listed,
        )
    }
    return frozenset(name for name, _ in entries if name not in secret)


def build_app(
    file: DesiredFile, source: str | None = None, *, referenced: Collection[str] = ()
) -> DesiredApp:
    """Merge ``defaults.config`` under every group and check the merged configs.

    ``referenced`` names the env keys whose values the loader resolved from ``${ENV:..}`` /
    ``${FILE:..}`` references (secret, never shown).  Raises :class:`DesiredStateInvalid` with
    locations inside the file.
    """
    issues: list[Issue] = []
    base = file.defaults.config.model_dump(mode="json", exclude_none=True)
    listed = frozenset(file.sensitive)
    declared_env: set[str] = set()
    groups = []
    for name, spec in file.groups.items():
        where: tuple[str | int, ...] = ("groups", name, "config")
        merged = deep_merge(base, spec.config.model_dump(mode="json", exclude_none=True))
        try:
            config = MachineConfig.model_validate(merged)
        except ValidationError as exc:  # a rule spanning defaults and group (e.g. x_passthrough)
            issues.extend(issues_from(exc, where))
            continue
        if config.image is None:
            issues.append(Issue((*where, "image"), "an image is required (here or in defaults)"))
        elif not file.allow_latest and (problem := image_problem(config.image)) is not None:
            in_group = spec.config.image is not None
            issues.append(Issue((*where, "image") if in_group else _DEFAULT_IMAGE, problem))
        if not file.allow_unknown_regions:
            for region in spec.regions:
                if region in DEPRECATED_REGIONS:
                    issues.append(
                        Issue(
                            ("groups", name, "regions", region),
                            f"Fly no longer places new machines in {region!r} (retired, list as "
                            f"of {REGIONS_AS_OF}); move the group, or set allow_unknown_regions: "
                            "true to keep machines that already run there",
                        )
                    )
                elif region not in FLY_REGIONS:
                    hint = did_you_mean(region, FLY_REGIONS) or (
                        "; set allow_unknown_regions: true for a region newer than the list"
                    )
                    issues.append(
                        Issue(
                            ("groups", name, "regions", region),
                            f"unknown Fly region {region!r} (list as of {REGIONS_AS_OF}){hint}",
                        )
                    )
        guest = config.guest or MachineGuest()
        kind_cpus = (guest.cpu_kind or "shared", guest.cpus or 1)
        if guest.memory_mb is None and kind_cpus != _DEFAULT_GUEST:
            # Fly's default memory depends on the size; spelling it out keeps plans exact.
            issues.append(
                Issue(
                    (*where, "guest", "memory_mb"),
                    "memory_mb is required when the guest is not shared-cpu-1x",
                )
            )
        if spec.mounts and config.mounts:
            issues.append(
                Issue(
                    (*where, "mounts"),
                    "declare volumes in the group's mounts: (a volume per machine), "
                    "not in config.mounts",
                )
            )
        if spec.state is not None and autostopped(config):
            issues.append(
                Issue(
                    ("groups", name, "state"),
                    "this group's services autostop: Fly starts and stops its machines, so "
                    'state: must be left unset (or set autostop: "off")',
                )
            )
        declared_env.update(n for n, _ in _env_entries(config.to_wire()))
        groups.append(
            DesiredGroup(
                name=name,
                regions=dict(spec.regions),
                config=config,
                update=spec.update,
                state=spec.state,
                restart_generation=spec.restart_generation,
                mounts=tuple(spec.mounts),
                shown_env=_shown_env(config, referenced=frozenset(referenced), listed=listed),
            )
        )
    for i, listed_name in enumerate(file.sensitive):
        if groups and listed_name not in declared_env:
            issues.append(
                Issue(
                    ("sensitive", i),
                    f"{listed_name!r} is not an env name of any group"
                    + did_you_mean(listed_name, declared_env),
                )
            )
    # one issue per location: the defaults' image is reported once, not once per group
    issues = list(dict.fromkeys(issues))
    if issues:
        raise DesiredStateInvalid(issues)
    return DesiredApp(
        app=file.app,
        groups=tuple(groups),
        org=file.org,
        prune=file.prune,
        detect_only=file.detect_only,
        max_destroy=file.max_destroy,
        max_create=file.max_create,
        prune_volumes=file.prune_volumes,
        source=source,
        paused="paused: true in the file" if file.paused else None,
    )


_DEFAULT_IMAGE: tuple[str | int, ...] = ("defaults", "config", "image")


def parse_app(data: Mapping[str, Any], source: str | None = None) -> DesiredApp:
    """Validate a parsed desired-state document and build the app (handy for tests and tools).

    References such as ``${ENV:NAME}`` are *not* resolved here (see
    :mod:`controller.loading.loader`). Raises :class:`DesiredStateInvalid`.
    """
    try:
        file = DesiredFile.model_validate(data)
    except ValidationError as exc:
        raise DesiredStateInvalid(issues_from(exc)) from None
    return build_app(file, source)
