"""Small builders of Fly machine configs shared by the integration tests."""

from __future__ import annotations

from typing import Any

IMAGE = "registry.fly.io/acme-web:v1"


def machine_config(
    *,
    image: str = IMAGE,
    env: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    memory_mb: int | None = None,
    mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A realistic machine config: an HTTP service with a check, optional env/metadata/mounts."""
    config: dict[str, Any] = {
        "image": image,
        "services": [
            {
                "protocol": "tcp",
                "internal_port": 8080,
                "ports": [{"port": 443, "handlers": ["tls", "http"]}],
            }
        ],
    }
    if env is not None:
        config["env"] = env
    if metadata is not None:
        config["metadata"] = metadata
    if memory_mb is not None:
        config["guest"] = {"cpu_kind": "shared", "cpus": 1, "memory_mb": memory_mb}
    if mounts is not None:
        config["mounts"] = mounts
    return config
