"""App secrets and the secrets version that ``min_secrets_version`` guards (FLY_API.md 1.3, 1.11).

Shapes follow SPEC-NEW (the saved spec only knows the older key-style secrets; the differences are
listed in ``tests/support/spec_check.py``):

* ``GET /apps/{app}/secrets`` -> ``{"secrets": [{name, digest, created_at, updated_at}]}``; values
  are never returned.
* ``POST /apps/{app}/secrets`` with ``{"values": {"NAME": "value" | null}}`` sets or (``null``)
  removes secrets in one write -> ``{"secrets": [...], "version": N}``.
* ``DELETE /apps/{app}/secrets/{name}`` -> ``{"version": N}``; an unknown name -> 404.

Every write bumps the app's secrets version by one, and the answer carries it.  flyctl keeps that
number and sends it as ``min_secrets_version`` on later machine creates and updates, so a machine
never boots with secrets older than the write it follows; a ``min_secrets_version`` newer than the
app's version is refused with 412 (reported by Kilo-Org/cloud PR #388; the text is chosen).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from controller.emulator import apierrors
from controller.emulator.model import App, Secret, rfc3339
from controller.emulator.store import Store

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""Secrets become environment variables, so their names must be valid variable names (chosen)."""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def view(secret: Secret) -> dict[str, Any]:
    return {
        "name": secret.name,
        "digest": secret.digest,
        "created_at": rfc3339(secret.created_at),
        "updated_at": rfc3339(secret.updated_at),
    }


def listing(app: App) -> list[dict[str, Any]]:
    return [view(app.secrets[name]) for name in sorted(app.secrets)]


def update(store: Store, app_name: str, body: Any) -> App:
    """Set (string) or unset (null) several secrets at once; one version bump for the write."""
    app = store.app(app_name)
    values = body.get("values") if isinstance(body, dict) else None
    if not isinstance(values, dict) or not values:
        raise apierrors.bad_request("values is required: an object of secret names to values")
    for name, value in values.items():
        if not SECRET_NAME.match(name):
            raise apierrors.bad_request(f"invalid secret name {name!r}")
        if value is not None and not isinstance(value, str):
            raise apierrors.bad_request(
                f"json: cannot unmarshal {type(value).__name__} into Go value of type string"
            )
    now = store.rt.wall()
    for name, value in values.items():
        if value is None:
            app.secrets.pop(name, None)
            continue
        old = app.secrets.get(name)
        created = old.created_at if old is not None else now
        app.secrets[name] = Secret(name, _digest(value), created, now)
    app.secrets_version += 1
    return app


def delete(store: Store, app_name: str, name: str) -> App:
    app = store.app(app_name)
    if name not in app.secrets:
        raise apierrors.generic(404, f"secret not found: {name}")
    del app.secrets[name]
    app.secrets_version += 1
    return app


def check_min_version(app: App, body: dict[str, Any]) -> None:
    """412 when the request wants secrets newer than the app has (FLY_API.md 1.3)."""
    wanted = body.get("min_secrets_version")
    if wanted is not None and wanted > app.secrets_version:
        raise apierrors.failed_precondition(
            f"min_secrets_version {wanted} is newer than the app's secrets version "
            f"{app.secrets_version}"
        )
