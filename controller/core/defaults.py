"""Every default number of the controller, once (issue 9).

The settings model (:mod:`controller.settings`), the executor's settings
(:class:`controller.execution.rollout.ExecutorSettings`) and the policies built from them
(:class:`~controller.core.retry.RetryPolicy`, :class:`~controller.flyapi.ratelimit.RateLimits`,
the lease and wait policies) all take their defaults from here, so changing one is one edit.
The reasons live next to each value.  Seconds unless said otherwise.
"""

from __future__ import annotations

from typing import Final

# --- leases (FLY_API.md 1.7, 4.1; DESIGN.md 5)
LEASE_TTL: Final = 30
"""Covers a normal update (stop, boot, 10 s smoke) without a refresh; a killed controller's
lease expires within 30 s."""
LEASE_REFRESH: Final = 20.0
LEASE_WAIT: Final = 60.0
"""How long to wait for someone else's lease before leaving the machine for the next pass."""
LEASE_RETRY_CAP: Final = 15.0
"""Longest single sleep between two looks at someone else's lease."""
LEASE_RETRY_MIN: Final = 0.5
"""Shortest sleep before looking at someone else's lease again (an expiry in the past too)."""
LEASE_UNKNOWN_EXPIRY: Final = 5.0
"""Sleep when a "held by" answer does not say when the lease expires."""
LEASE_RELEASE_TIMEOUT: Final = 5.0
LEASE_ACQUIRE_RETRIES: Final = 3
"""Extra tries of an acquisition that failed ambiguously (5xx, timeout, dropped)."""
LEASE_ACQUIRE_BACKOFF_BASE: Final = 0.5
LEASE_ACQUIRE_BACKOFF_CAP: Final = 5.0
LEASE_ACQUIRE_BACKOFF_MIN: Final = 0.2

# --- concurrency
MAX_IN_FLIGHT: Final = 512
"""Global safety cap on machine operations in flight; the groups' ``max_unavailable`` windows set
the pace.  High enough that one 1,000-machine group at 0.33 (a window of 330) is not throttled
by it: Fly's rate limits are per machine and action, so they do not call for a global cap, and
a cap below the windows would make a safe rollout slower than the user asked for."""
MAX_CONCURRENT_APPS: Final = 16
"""Apps the daemon reconciles at once.  Fly paces creates per app (1/s, burst 3), so an app
scaling up takes its own time however idle the rest is: with 4, ten apps of 100 new machines
converged in three rounds (293 s), with 16 in one (147 s; `make soak`, both on a busy
2-core machine).  The global in-flight cap and the client's
rate limit bound the total load, not this."""

# --- waiting for a machine (FLY_API.md 1.6, 4.5)
WAIT_CHUNK: Final = 60.0
"""Longest /wait long-poll Fly accepts."""
CHECK_POLL_MIN: Final = 1.0
CHECK_POLL_MAX: Final = 2.0
CHECK_READ_MAX: Final = 5.0
SMOKE_SECONDS: Final = 10.0
"""How long a machine without checks must stay up (flyctl's 10 s)."""
CREATED_404_GRACE: Final = 10.0
WAIT_ERROR_BACKOFF_BASE: Final = 0.5
WAIT_ERROR_BACKOFF_CAP: Final = 2.0
"""Pauses after a transient failure while waiting stay short: the wait has its own deadline."""

# --- retries (DESIGN.md 6)
RETRY_MAX_ATTEMPTS: Final = 4
RETRY_BASE_DELAY: Final = 1.0
RETRY_MIN_DELAY: Final = 1.0
"""Floor of a transient retry's jittered sleep (full jitter never retries at once)."""
RETRY_MAX_DELAY: Final = 30.0
RETRY_MAX_RETRY_AFTER: Final = 60.0
CONFLICT_RETRIES: Final = 5
CONFLICT_BACKOFF_BASE: Final = 0.1
CONFLICT_BACKOFF_CAP: Final = 5.0
CONFLICT_REQUEUE: Final = 5.0
CAPACITY_BACKOFF_BASE: Final = 30.0
CAPACITY_BACKOFF_CAP: Final = 900.0

# --- client pacing (FLY_API.md 5)
ACTION_RATE: Final = 1.0
ACTION_BURST: Final = 3
READ_RATE: Final = 5.0
READ_BURST: Final = 10
GLOBAL_RATE: Final = 250.0
"""Ours, not Fly's (FLY_API.md 5 documents no per-token rate): a runaway guard above what a
330-machine window issues (about 6 calls per machine over its ~13 s update: ~150 req/s)."""
GLOBAL_BURST: Final = 500
