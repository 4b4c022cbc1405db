"""Volume update, extend and snapshots (FLY_API.md 1.11); create/list/delete are in ``apps.py``.

* ``PUT /apps/{app}/volumes/{id}`` (``UpdateVolumeRequest``): ``snapshot_retention`` (days,
  1..60, Fly's documented range for ``fly volumes update --snapshot-retention``) and
  ``auto_backup_enabled``; absent fields are left alone.  Answers the volume.
* ``PUT .../extend`` (``ExtendVolumeRequest``): ``size_gb`` must grow the volume (volumes cannot
  shrink) and stay within 500 GB (Fly's maximum volume size); answers
  ``{"volume", "needs_restart"}``, ``needs_restart`` true while a live machine has it mounted
  (the filesystem grows on the machine's next start; chosen).
* ``GET|POST .../snapshots``: snapshots are taken at once (``status: "created"``), sized like the
  volume, kept ``snapshot_retention`` days; POST answers 200 without a body, as the spec says.
"""

from __future__ import annotations

from typing import Any

from controller.emulator import apierrors
from controller.emulator.ids import image_digest
from controller.emulator.model import Snapshot, Volume, rfc3339
from controller.emulator.store import Store

RETENTION_DAYS = (1, 60)
MAX_SIZE_GB = 500


def update(store: Store, app_name: str, volume_id: str, body: Any) -> Volume:
    volume = store.volume(app_name, volume_id)
    body = body if isinstance(body, dict) else {}
    retention = body.get("snapshot_retention")
    if retention is not None:
        low, high = RETENTION_DAYS
        if not low <= retention <= high:
            raise apierrors.bad_request(f"snapshot_retention must be between {low} and {high} days")
        volume.snapshot_retention = retention
    backups = body.get("auto_backup_enabled")
    if backups is not None:
        volume.auto_backup_enabled = backups
    return volume


def extend(store: Store, app_name: str, volume_id: str, body: Any) -> tuple[Volume, bool]:
    """Grow the volume; returns it and whether the machine using it must restart."""
    volume = store.volume(app_name, volume_id)
    size = body.get("size_gb") if isinstance(body, dict) else None
    if size is None:
        raise apierrors.bad_request("size_gb is required")
    if size <= volume.size_gb:
        raise apierrors.bad_request(
            f"size_gb must be greater than the volume's current size ({volume.size_gb} GB)"
        )
    if size > MAX_SIZE_GB:
        raise apierrors.bad_request(f"size_gb must be at most {MAX_SIZE_GB}")
    volume.size_gb = size
    holder = volume.attached_machine_id
    needs_restart = holder is not None and not store.machine(app_name, holder).destroyed
    return volume, needs_restart


def snapshot(store: Store, app_name: str, volume_id: str) -> Snapshot:
    volume = store.volume(app_name, volume_id)
    taken = Snapshot(
        id=f"vs_{store.rt.ids.cursor()[:16]}",
        created_at=store.rt.wall(),
        size=volume.size_gb * 1024**3,
        digest=image_digest(f"{volume.id}:{len(volume.snapshots)}"),
        retention_days=volume.snapshot_retention,
    )
    volume.snapshots.append(taken)
    return taken


def snapshot_view(taken: Snapshot) -> dict[str, Any]:
    return {
        "id": taken.id,
        "created_at": rfc3339(taken.created_at),
        "size": taken.size,
        "digest": taken.digest,
        "retention_days": taken.retention_days,
        "status": taken.status,
    }
