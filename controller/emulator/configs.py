"""Server-side validation and normalisation of machine configs, the source of "phantom diffs".

Fly stores a machine config with server-filled defaults (TFFLY issues #74, #77, #127/#151,
FLY_API.md 6.9), so a client that diffs raw request JSON against the returned config always sees
drift.  The emulator applies the table below on create **and** on every update (updates are full
replacements, so a default reappears whenever the client omits the field again).

=================  ===========================  ==================================================
Field              Request                      Stored and returned
=================  ===========================  ==================================================
``guest``          missing, or missing keys     missing keys filled: ``cpu_kind: "shared"``,
                                                ``cpus: 1``, ``memory_mb: 256`` (TFFLY #74 and the
                                                provider's hard-coded defaults)
``restart``        missing / no ``policy``      ``{"policy": "on-failure"}`` (the spec's
                                                fly.MachineRestart: "Default when no explicit
                                                policy is set")
``init``           missing                      ``{}`` (every fly.MachineInit field is optional)
``metadata``       missing, or without the keys ``fly_platform_version: "v2"`` and
                                                ``fly_process_group: "app"`` added when absent;
                                                values the client sent are kept
``mounts[]``       ``{volume, path}``           ``name`` (the volume's name), ``encrypted: true``
                                                and ``size_gb`` (the volume's size) added when
                                                absent (TFFLY #52)
``image``          as sent                      unchanged; the resolved form is the top-level
                                                ``image_ref`` {registry, repository, tag, digest,
                                                labels}: Docker Hub images resolve to
                                                ``docker-hub-mirror.fly.io`` / ``library/<name>``,
                                                a missing tag to ``latest``, the digest is a
                                                stable ``sha256:`` of the image string
``env``            missing / ``{}``             missing stays absent; ``{}`` is kept as ``{}``
``services``       missing / ``[]``             missing stays absent; ``[]`` is kept as ``[]``
everything else    as sent                      unchanged (deep-copied)
=================  ===========================  ==================================================

Top-level fields outside ``config`` that the server adds are listed in ``views.py``.
"""

from __future__ import annotations

import copy
from typing import Any

from controller.emulator import apierrors
from controller.emulator.ids import image_digest

GUEST_DEFAULTS: dict[str, Any] = {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}
RESTART_DEFAULT: dict[str, Any] = {"policy": "on-failure"}
FLY_METADATA_DEFAULTS: dict[str, str] = {"fly_platform_version": "v2", "fly_process_group": "app"}
RESTART_POLICIES = ("no", "always", "on-failure", "spot-price")
CPU_KINDS = ("shared", "performance")
DEFAULT_MAX_RETRIES = 10
"""Restart attempts assumed for ``on-failure`` without ``max_retries`` (chosen)."""
DOCKER_HUB_MIRROR = "docker-hub-mirror.fly.io"


def _invalid(message: str) -> apierrors.ApiError:
    return apierrors.generic(422, message)


def validate_guest(guest: Any, where: str) -> None:
    """A guest (``config.guest``, or a volume's ``compute`` hint) Fly could place (422)."""
    if not isinstance(guest, dict):
        raise _invalid(f"invalid {where}: must be an object")
    for key in ("cpus", "memory_mb"):
        value = guest.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _invalid(f"invalid {where}.{key}: {value!r}")
        if value is not None and value < 1:
            raise _invalid(f"invalid {where}.{key}: {value!r}")
    if guest.get("cpu_kind") not in (None, *CPU_KINDS):
        raise _invalid(f"invalid {where}.cpu_kind: {guest.get('cpu_kind')!r}")


def validate(config: Any) -> dict[str, Any]:
    """Reject configs Fly would reject (422); returns the config typed as a dict."""
    if not isinstance(config, dict):
        raise apierrors.bad_request("config is required and must be an object")
    image = config.get("image")
    if not isinstance(image, str) or not image.strip():
        raise _invalid("invalid config.image: an image is required")
    validate_guest(config.get("guest", {}), "config.guest")
    restart = config.get("restart", {})
    if not isinstance(restart, dict) or restart.get("policy") not in (None, *RESTART_POLICIES):
        raise _invalid("invalid config.restart.policy")
    for key, kind in (("env", dict), ("metadata", dict), ("services", list), ("mounts", list)):
        if key in config and not isinstance(config[key], kind):
            raise _invalid(f"invalid config.{key}: must be an {kind.__name__}")
    metadata = config.get("metadata") or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise _invalid("invalid config.metadata: values must be strings")
    env = config.get("env") or {}
    if not all(isinstance(v, str) for v in env.values()):
        raise _invalid("invalid config.env: values must be strings")
    for mount in config.get("mounts", []):
        if not isinstance(mount, dict) or not isinstance(mount.get("volume"), str):
            raise apierrors.bad_request("invalid config.mounts: each mount needs a volume id")
        if not isinstance(mount.get("path"), str):
            raise apierrors.bad_request("invalid config.mounts: each mount needs a path")
    return config


def normalise(config: dict[str, Any], volumes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Apply the module's defaults table to a validated config (returns a new dict).

    ``volumes`` maps volume id -> ``{"name", "size_gb"}`` for the mounts' server-filled fields.
    """
    out = copy.deepcopy(config)
    out["guest"] = {**GUEST_DEFAULTS, **out.get("guest", {})}
    restart = out.get("restart") or {}
    out["restart"] = {**RESTART_DEFAULT, **restart}
    if "init" not in out or out["init"] is None:
        out["init"] = {}
    metadata = dict(out.get("metadata") or {})
    for key, value in FLY_METADATA_DEFAULTS.items():
        metadata.setdefault(key, value)
    out["metadata"] = metadata
    for mount in out.get("mounts", []):
        volume = volumes.get(mount["volume"], {})
        mount.setdefault("name", volume.get("name", ""))
        mount.setdefault("encrypted", True)
        mount.setdefault("size_gb", volume.get("size_gb", 1))
    return out


def memory_mb(config: dict[str, Any]) -> int:
    """Memory a (normalised) config reserves."""
    return int(config.get("guest", {}).get("memory_mb", GUEST_DEFAULTS["memory_mb"]))


def image_ref(image: str) -> dict[str, Any]:
    """The resolved image reference Fly returns next to the config."""
    digest_part = ""
    name = image
    if "@" in name:
        name, digest_part = name.split("@", 1)
    tag = "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB_MIRROR, name if "/" in name else f"library/{name}"
    digest = digest_part if digest_part.startswith("sha256:") else image_digest(image)
    return {
        "registry": registry,
        "repository": repository,
        "tag": tag,
        "digest": digest,
        "labels": {},
    }


def configured_checks(config: dict[str, Any]) -> list[str]:
    """Names of the checks a config defines: ``config.checks`` plus ``services[].checks``.

    Service checks get flyd-style generated names (``servicecheck-00-tcp-8080``).
    """
    names = sorted((config.get("checks") or {}).keys())
    index = 0
    for service in config.get("services") or []:
        if not isinstance(service, dict):
            continue
        for check in service.get("checks") or []:
            if not isinstance(check, dict):
                continue
            kind = check.get("type", "tcp")
            port = check.get("port", service.get("internal_port", 0))
            names.append(f"servicecheck-{index:02d}-{kind}-{port}")
            index += 1
    return names
