"""Fault injection rules: scripted ("the next N matching requests") and probabilistic (seeded).

A rule matches on method (optional) and a regex searched in the request path, and then does any
of: wait ``latency`` seconds of emulator clock time; answer ``status`` with ``body``/``headers``
instead of handling the request; ``drop`` the connection ``before`` the request is handled (no
effect on state) or ``after`` it (the work is committed: the "silent success" of FLY_API.md 1.3);
or, with ``commit: true``, handle the request for real and then answer ``status`` anyway (a 408 or
5xx that still created the machine).  Scripted rules fire ``count`` times (default 1);
probabilistic rules fire with ``probability`` on each match, drawn from a ``random.Random``
seeded from the emulator's seed, at most ``count`` times if given.  The first rule that fires
wins; rules are checked in the order they were added.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultSpec(BaseModel):
    """The JSON shape of ``POST /_emulator/faults`` (and of scenario ``faults:`` entries)."""

    model_config = ConfigDict(extra="forbid")

    method: str | None = None
    path: str = ".*"
    count: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, gt=0, le=1)
    status: int | None = Field(default=None, ge=100, le=599)
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    latency: float = Field(default=0.0, ge=0)
    drop: Literal["before", "after"] | None = None
    commit: bool = False

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        try:
            re.compile(self.path)
        except re.error as exc:
            raise ValueError(f"path is not a valid regex: {exc}") from exc
        if self.status is None and self.drop is None and self.latency == 0:
            raise ValueError("a fault needs at least one of status, drop or latency")
        if self.commit and self.status is None:
            raise ValueError("commit needs a status to answer with")
        if self.commit and self.drop is not None:
            raise ValueError("commit and drop are exclusive")
        if self.count is None and self.probability is None:
            self.count = 1
        return self


@dataclass
class FaultRule:
    id: str
    spec: FaultSpec
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.spec.count is not None and self.fired >= self.spec.count

    def response_body(self) -> Any:
        if self.spec.body is not None:
            return self.spec.body
        return {"error": f"injected fault: HTTP {self.spec.status}"}

    def to_json(self) -> dict[str, Any]:
        remaining = None if self.spec.count is None else self.spec.count - self.fired
        return {
            "id": self.id,
            **self.spec.model_dump(),
            "fired": self.fired,
            "remaining": remaining,
        }


class FaultBook:
    """The active rules, matched against every /v1 request."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rules: list[FaultRule] = []
        self._next = 0

    def add(self, spec: FaultSpec) -> FaultRule:
        self._next += 1
        rule = FaultRule(f"fault-{self._next}", spec)
        self._rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != rule_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def match(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this request (consuming one use), if any."""
        for rule in self._rules:
            spec = rule.spec
            if rule.exhausted:
                continue
            if spec.method is not None and spec.method.upper() != method.upper():
                continue
            if re.search(spec.path, path) is None:
                continue
            if spec.probability is not None and self._rng.random() >= spec.probability:
                continue
            rule.fired += 1
            return rule
        return None
