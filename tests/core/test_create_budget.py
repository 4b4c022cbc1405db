"""The create budget (issue 14): ``regions: {ams: 10000}`` validates, but a plan creating more
than ``max_create`` machines is refused (apply exits 4) instead of starting 10,000 creates."""

from __future__ import annotations

from typing import Any

import pytest

from controller.model.desired import DEFAULT_MAX_CREATE, DesiredStateInvalid, parse_app
from controller.planning.plan import plan


def _app(ams: int, **top: Any) -> Any:
    return parse_app(
        {
            "app": "acme",
            "defaults": {"config": {"image": "registry.fly.io/acme:v1"}},
            "groups": {"web": {"regions": {"ams": ams}}},
            **top,
        }
    )


def test_ten_thousand_creates_are_refused_by_default() -> None:
    """The typo case: one line of YAML, 10,000 machines; refused with the way out named."""
    result = plan(_app(10_000), [])
    assert result.refused is not None
    assert result.refused.reason == (
        "would create 10000 machines of acme, more than max_create 100; "
        "raise max_create in the file to allow it"
    )


@pytest.mark.parametrize(("ams", "refused"), [(DEFAULT_MAX_CREATE, False), (101, True)])
def test_default_budget_edge(ams: int, refused: bool) -> None:
    """Exactly ``max_create`` creates are allowed; one more is refused."""
    assert (plan(_app(ams), []).refused is not None) is refused


def test_max_create_from_the_file() -> None:
    """``max_create`` in the file raises or lowers the budget."""
    assert plan(_app(500, max_create=500), []).refused is None
    assert plan(_app(2, max_create=1), []).refused is not None
    assert plan(_app(0, max_create=0), []).refused is None


def test_max_create_must_not_be_negative() -> None:
    """A negative budget is a validation error, like every other bad field."""
    with pytest.raises(DesiredStateInvalid):
        _app(1, max_create=-1)
