"""The request log read by ``GET /_emulator/requests``: what a client sent, never its secrets.

Each /v1 request is recorded as ``{seq, method, path, query, headers_present, body, status,
request_id, fault, dropped, at, audit}``.  ``headers_present`` holds lowercased header *names*
only, never values, so the bearer token and lease nonces cannot leak into test output; ``body``
is the parsed JSON body (or null).  ``audit`` is what the emulator knew about the machine
addressed when the request was handled (lease nonce matched, ``current_version`` matched,
managed or not: see ``audit.py``), or null for requests on no single machine and for requests
answered before routing (auth, 429, injected status faults).  Tests assert on the exact
sequence of calls, the way sample-controller's tests compare recorded API actions.  The newest
20,000 entries are kept.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any
from urllib.parse import parse_qs

MAX_ENTRIES = 20_000


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or None when it is empty or not JSON."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


class RequestLog:
    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=MAX_ENTRIES)
        self._seq = 0

    def add(
        self,
        *,
        method: str,
        path: str,
        query_string: bytes,
        header_names: list[str],
        raw_body: bytes,
        request_id: str,
        at: float,
    ) -> dict[str, Any]:
        """Record a request; the caller fills ``status``/``fault``/``dropped`` when known."""
        self._seq += 1
        entry: dict[str, Any] = {
            "seq": self._seq,
            "method": method,
            "path": path,
            "query": parse_qs(query_string.decode("latin-1"), keep_blank_values=True),
            "headers_present": sorted({name.lower() for name in header_names}),
            "body": parse_json(raw_body),
            "status": None,
            "request_id": request_id,
            "fault": None,
            "dropped": None,
            "at": at,
            "audit": None,
        }
        self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._entries]

    def clear(self) -> None:
        self._entries.clear()
