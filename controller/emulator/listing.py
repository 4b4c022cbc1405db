"""``GET /apps/{app}/machines``: filters and cursor pagination (FLY_API.md 1.1).

Filters: ``region``; ``state`` (comma list); ``include_deleted`` (destroyed machines are hidden
otherwise); ``metadata.<key>=<value>`` (all must match ``config.metadata`` exactly).  Order is
creation order, which is deterministic.

Pagination: ``limit`` (1..1000, else 400) turns it on.  The next position is kept server-side under
an opaque cursor returned in the ``fly-next-cursor`` header, absent on the last page.  Every
cursor of a listing expires ``cursor_ttl_seconds`` (30 min) after that listing's first page;
expired, unknown or foreign cursors get 400.  A ``cursor`` without ``limit`` pages by 1000.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.emulator import apierrors
from controller.emulator.model import Machine
from controller.emulator.store import Cursor, Store

MAX_LIMIT = 1000
TRUE_VALUES = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def truthy(query: Mapping[str, Sequence[str]], key: str) -> bool:
    """A boolean query parameter, true in Go's strconv.ParseBool spellings only.

    Other spellings were refused with 400 before the handler ran (``decoding.check_query``).
    """
    values = query.get(key) or []
    return bool(values) and values[-1] in TRUE_VALUES


def first(query: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = query.get(key) or []
    return values[0] if values else None


def _matches(machine: Machine, query: Mapping[str, Sequence[str]]) -> bool:
    if machine.destroyed and not truthy(query, "include_deleted"):
        return False
    region = first(query, "region")
    if region and machine.region != region:
        return False
    states = {s.strip() for v in query.get("state") or [] for s in v.split(",") if s.strip()}
    if states and machine.state not in states:
        return False
    metadata = machine.config.get("metadata") or {}
    for key, values in query.items():
        if key.startswith("metadata."):
            wanted = key.removeprefix("metadata.")
            if any(metadata.get(wanted) != value for value in values):
                return False
    return True


def _limit(query: Mapping[str, Sequence[str]]) -> int | None:
    raw = first(query, "limit")
    if raw is None:
        return MAX_LIMIT if first(query, "cursor") else None
    try:
        limit = int(raw)
    except ValueError:
        raise apierrors.bad_request(f"invalid limit: {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise apierrors.bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _prune(store: Store) -> None:
    now = store.rt.now()
    ttl = store.rt.behaviour.cursor_ttl_seconds
    # Kept for a second TTL so a late client still gets "cursor expired", not "invalid cursor".
    for key in [k for k, c in store.cursors.items() if now - c.first_page_at >= 2 * ttl]:
        del store.cursors[key]


def list_machines(
    store: Store, app: str, query: Mapping[str, Sequence[str]]
) -> tuple[list[Machine], str | None]:
    """The page of machines for ``query`` and the next cursor (None on the last page)."""
    machines = [m for m in store.app_machines(app) if _matches(m, query)]
    limit = _limit(query)
    if limit is None:
        return machines, None
    now = store.rt.now()
    after_seq, first_page_at = 0, now
    token = first(query, "cursor")
    if token:
        cursor = store.cursors.get(token)
        if cursor is None or cursor.app != app:
            raise apierrors.bad_request("invalid cursor")
        if now - cursor.first_page_at >= store.rt.behaviour.cursor_ttl_seconds:
            raise apierrors.bad_request("cursor expired")
        after_seq, first_page_at = cursor.after_seq, cursor.first_page_at
    _prune(store)
    remaining = [m for m in machines if m.seq > after_seq]
    page = remaining[:limit]
    if len(remaining) <= limit:
        return page, None
    next_token = store.rt.ids.cursor()
    store.cursors[next_token] = Cursor(app, page[-1].seq, first_page_at)
    return page, next_token
