"""The emulator's behaviour toggles, with production-like defaults.

Everything that makes the emulator behave like the real Machines API *and* could get in a test's
way is a field here: boot/stop latencies, check delays, rate limits, the 60 s wait cap, capacity
and quotas.  Defaults mirror production as far as FLY_API.md documents it; tests and demos turn
individual toggles down explicitly (``Behaviour(boot_seconds=0)``) or at run time through
``PATCH /_emulator/behaviour``.  Values Fly does not document are marked "chosen" below.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Behaviour(BaseModel):
    """Toggles read on every request; replacing the object takes effect immediately."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- placement defaults
    default_region: str = "iad"
    """Region for creates without ``region`` (Fly: the region near the API edge; chosen)."""
    default_org_slug: str = "personal"
    """Org for apps created without ``org_slug``."""

    # --- state transitions (seconds of clock time; DOCS-STATES lists the transient states)
    boot_seconds: float = Field(default=2.0, ge=0)
    """``starting`` -> ``started`` (chosen; Firecracker boots in about a second or two)."""
    stop_seconds: float = Field(default=1.0, ge=0)
    """``stopping`` -> ``stopped``."""
    suspend_seconds: float = Field(default=1.5, ge=0)
    """``suspending`` -> ``suspended``."""
    destroy_seconds: float = Field(default=0.5, ge=0)
    """``destroying`` -> ``destroyed``."""
    checks_pass_seconds: float = Field(default=5.0, ge=0)
    """Delay after reaching ``started`` before configured checks report a status (1.4/4.5)."""
    crash_after_seconds: float = Field(default=3.0, gt=0)
    """How long a crash-looping machine runs before each exit."""
    read_after_create_404_seconds: float = Field(default=0.0, ge=0)
    """GET/wait return 404 this long after a create (FLY_API.md 1.6; off: duration unknown)."""
    request_latency_seconds: float = Field(default=0.0, ge=0)
    """Extra clock time spent on every /v1 request before it is handled."""

    # --- /wait (FLY_API.md 1.6)
    wait_max_seconds: int = Field(default=60, ge=1)
    """Largest accepted ``timeout``; larger values get 400 ``invalid_argument``."""
    wait_default_seconds: int = Field(default=60, ge=1)
    """``timeout`` used when the request has none (chosen)."""
    wait_poll_seconds: float = Field(default=0.05, gt=0)
    """How often a blocked wait re-checks the machine."""
    wait_stopped_requires_version: bool = True
    """``state=stopped`` without ``version``/``instance_id`` -> 400 (DOCS-MACH, Kilo-Org #297)."""

    # --- leases (FLY_API.md 1.7)
    lease_default_ttl_seconds: int = Field(default=30, ge=1)
    """TTL for a lease request that names none (chosen; every known client sends one)."""
    lease_time_format: Literal["go", "rfc3339"] = "go"
    """``go``: ``2022-10-20 19:59:06 +0000 UTC`` (DOCS-LEASE); ``rfc3339``: the 2026 log form."""

    # --- capacity and quotas (FLY_API.md 3.2, 5)
    region_capacity_mb: dict[str, int] = Field(default_factory=dict)
    """Memory budget per region, summed over non-destroyed machines of every app; unlisted
    regions are unlimited.  Over budget: create -> 422 insufficient_capacity, update -> 409."""
    org_machine_limit: int | None = Field(default=1000, ge=0)
    """Non-destroyed machines per org before create -> 422.  Chosen: 1000 (Fly's real default
    is unpublished; "roughly 50" for new orgs is unconfirmed)."""
    org_region_quota_mb: dict[str, int] = Field(default_factory=dict)
    """Per-org memory quota per region; exceeding it on create -> 403 ``over the allowed quota``."""

    # --- rate limits (FLY_API.md 5: per action, per machine or app)
    rate_limits: bool = True
    action_rate_per_second: float = Field(default=1.0, gt=0)
    action_burst: int = Field(default=3, ge=1)
    get_machine_rate_per_second: float = Field(default=5.0, gt=0)
    get_machine_burst: int = Field(default=10, ge=1)
    app_delete_per_minute: int = Field(default=100, ge=1)
    retry_after_header: bool = True
    """Send ``Retry-After`` on 429 (unconfirmed whether Fly does; on so clients can use it)."""

    # --- health / failure simulation
    fail_checks_env: str = "EMULATOR_FAIL_CHECKS"
    """A machine whose ``config.env`` sets this to ``1`` never passes its checks."""
    crashloop_image_markers: list[str] = Field(default_factory=lambda: ["crashloop"])
    """A machine whose image tag contains one of these keeps exiting and never passes checks."""

    # --- list pagination (FLY_API.md 1.1)
    cursor_ttl_seconds: float = Field(default=1800.0, gt=0)
    """A cursor expires this long after the first page was requested (30 min)."""

    def patched(self, changes: dict[str, Any]) -> Behaviour:
        """A validated copy with ``changes`` applied (raises ``pydantic.ValidationError``)."""
        return Behaviour.model_validate({**self.model_dump(), **changes})
