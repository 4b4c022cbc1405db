"""Per-action token buckets on the emulator clock (FLY_API.md 5, DOCS-WORK).

"1 request per second, per action, with a short-term burst up to 3 ... except Get Machine which
is 5 req/s, burst 10.  App deletions are limited to 100 per minute."  The scope is the machine id
for machine endpoints and the app name for app-level endpoints (create, list, volumes); Fly says
only "Machine ID or App ID, depending on the type of request", so this split is chosen.  The
action is the method plus the path template (``POST apps/*/machines/*/start``).  A refused
request gets 429 ``{"error": "rate limit exceeded"}`` and, unless turned off, ``Retry-After`` in
whole seconds until a token is available (Fly's header is unconfirmed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.emulator import apierrors
from controller.emulator.model import Runtime


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float | None:
        """Consume a token; on refusal return the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


_KEYED = ("apps", "machines", "volumes", "metadata")


def classify(method: str, path: str) -> tuple[str, str]:
    """``(action, scope)`` for a /v1 path: machine id, else app name, else ``global``."""
    parts = [p for p in path.split("/") if p][1:]  # drop "v1"
    template: list[str] = []
    scope = "global"
    index = 0
    while index < len(parts):
        part = parts[index]
        template.append(part)
        if part in _KEYED and index + 1 < len(parts):
            template.append("*")
            ident = parts[index + 1]
            if part == "apps":
                scope = f"app:{ident}"
            elif part == "machines":
                scope = f"machine:{ident}"
            index += 2
        else:
            index += 1
    return f"{method} {'/'.join(template)}", scope


class RateLimiter:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def _limits(self, action: str) -> tuple[float, float]:
        b = self._rt.behaviour
        if action == "GET apps/*/machines/*":
            return b.get_machine_rate_per_second, b.get_machine_burst
        if action == "DELETE apps/*":
            return b.app_delete_per_minute / 60.0, b.app_delete_per_minute
        return b.action_rate_per_second, b.action_burst

    def check(self, method: str, path: str) -> None:
        """Raise 429 when this request's bucket is empty."""
        behaviour = self._rt.behaviour
        if not behaviour.rate_limits:
            return
        action, scope = classify(method, path)
        if action == "DELETE apps/*":
            scope = "global"
        rate, burst = self._limits(action)
        now = self._rt.now()
        bucket = self._buckets.get((action, scope))
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = TokenBucket(rate, burst, burst, now)
            self._buckets[(action, scope)] = bucket
        wait = bucket.take(now)
        if wait is not None:
            retry_after = max(1, math.ceil(wait)) if behaviour.retry_after_header else None
            raise apierrors.rate_limited(retry_after)
