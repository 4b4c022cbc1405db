"""Properties of the planner over generated desired states and messy live fleets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp, parse_app
from controller.planning.plan import Create, plan
from controller.planning.render import render, to_json
from tests.core.planning_support import FakeFly

REGIONS = ("ams", "iad", "fra", "sin")
GROUPS = ("web", "worker", "api-v2")
SECRET = st.text(alphabet="abcdefghijkmnopqrstuvwxyz0123456789", min_size=10, max_size=16).map(
    lambda s: f"SECRET-{s}"
)

checks = st.dictionaries(
    st.sampled_from(["http", "alive"]),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["http", "tcp"]), "port": st.just(8080)},
        optional={
            "interval": st.sampled_from(["10s", "60s", "1500ms", "2m", "1m30s"]),
            "timeout": st.sampled_from(["2s", "500ms"]),
            "path": st.just("/healthz"),
        },
    ),
    max_size=2,
)
services = st.lists(
    st.fixed_dictionaries(
        {"internal_port": st.sampled_from([8080, 9000]), "protocol": st.just("tcp")},
        optional={
            "autostop": st.sampled_from(["off", "stop", "suspend"]),
            "autostart": st.booleans(),
            "ports": st.lists(
                st.fixed_dictionaries(
                    {"port": st.sampled_from([80, 443])},
                    optional={
                        "handlers": st.sampled_from([["http"], ["tls", "http"], []]),
                        "force_https": st.booleans(),
                    },
                ),
                max_size=2,
            ),
            "checks": st.lists(
                st.fixed_dictionaries(
                    {"type": st.just("tcp")},
                    optional={"grace_period": st.sampled_from(["5s", "60s"])},
                ),
                max_size=1,
            ),
        },
    ),
    max_size=2,
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "image": st.sampled_from(["registry.fly.io/acme:v1", "registry.fly.io/acme:v2", "nginx:1"]),
        "guest": st.sampled_from(
            [
                {"memory_mb": 512},
                {"cpu_kind": "shared", "cpus": 1},
                {"cpu_kind": "performance", "cpus": 2, "memory_mb": 4096},
            ]
        ),
        # secret by name (core.redaction): never shown; LOG_LEVEL is literal and shown
        "env": st.dictionaries(
            st.sampled_from(["API_TOKEN", "DB_PASSWORD", "SECRET_KEY"]), SECRET, max_size=3
        ).map(lambda env: {**env, "LOG_LEVEL": "info"}),
        "services": services,
        "checks": checks,
        "restart": st.sampled_from(
            [{"policy": "always"}, {"policy": "on-failure"}, {"policy": "no"}, {}]
        ),
        "init": st.sampled_from([{"cmd": ["bin/run"]}, {"tty": False}, {}]),
        "auto_destroy": st.booleans(),
        "metadata": st.sampled_from([{"team": "a"}, {"team": "b"}, {}]),
        "stop_config": st.sampled_from([{"signal": "SIGTERM", "timeout": "90s"}, {}]),
    },
)
groups = st.dictionaries(
    st.sampled_from(GROUPS),
    st.fixed_dictionaries(
        {
            "regions": st.dictionaries(
                st.sampled_from(REGIONS), st.integers(min_value=0, max_value=3), max_size=3
            ),
            "config": configs,
        }
    ),
    max_size=3,
)


@st.composite
def apps(draw: st.DrawFn, /, **top: Any) -> DesiredApp:
    """A valid desired app (image always set in defaults)."""
    defaults = draw(configs)
    defaults.setdefault("image", "registry.fly.io/acme:v1")
    doc = {"app": "acme", "defaults": {"config": defaults}, "groups": draw(groups), **top}
    return parse_app(doc)


@st.composite
def fleets(draw: st.DrawFn, previous: DesiredApp | None = None) -> list[LiveMachine]:
    """A live fleet: a previous desired state applied, then lost, duplicated, edited, foreign."""
    fly = FakeFly()
    previous = previous or draw(apps())
    live = fly.apply(plan(previous, []), [])
    out: list[LiveMachine] = []
    for machine in live:
        fate = draw(st.sampled_from(["keep", "keep", "lose", "duplicate", "edit", "stop"]))
        if fate == "lose":
            continue
        if fate == "duplicate":
            out.append(fly.machine(dict(machine.config), machine.region))
        elif fate == "edit":
            guest = {"cpu_kind": "shared", "cpus": 1, "memory_mb": 2048}
            machine = replace(machine, config={**machine.config, "guest": guest})
        elif fate == "stop":
            machine = replace(machine, state=draw(st.sampled_from(["stopped", "suspended"])))
        out.append(machine)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        region = draw(st.sampled_from(REGIONS))
        out.append(fly.machine({"image": "foreign", "env": {"X": draw(SECRET)}}, region))
    return out


def _unmanaged_ids(live: list[LiveMachine]) -> set[str]:
    return {m.id for m in live if not m.managed}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(desired=apps(), data=st.data(), keep_orphans=st.booleans())
def test_applying_a_plan_converges(
    desired: DesiredApp, data: st.DataObject, keep_orphans: bool
) -> None:
    """Apply the plan the way Fly would, plan again: nothing left to do."""
    same_app = data.draw(st.booleans(), label="fleet built from the desired app itself")
    live = data.draw(fleets(desired if same_app else None), label="live")
    fly = FakeFly(start=1_000_000)
    first = plan(desired, live, allow_empty=True, prune=not keep_orphans)
    for kind in sorted({a.kind for a in first.actions}):
        event(f"plan has {kind}")
    if first.refused is not None:  # the budget is the file's; lift it to test convergence
        desired = desired.model_copy(update={"max_destroy": 1.0})
        first = plan(desired, live, allow_empty=True, prune=not keep_orphans)
    assert first.refused is None
    after = fly.apply(first, live)
    second = plan(desired, after, allow_empty=True, prune=not keep_orphans)
    assert not second.has_changes, [a for a in second.actions if a.kind != "noop"]
    assert _unmanaged_ids(after) == _unmanaged_ids(live)
    wanted = sum(g.size for g in desired.groups)
    assert len(second.actions) == wanted


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(desired=apps(), live=fleets(), data=st.data())
def test_planning_is_deterministic(
    desired: DesiredApp, live: list[LiveMachine], data: st.DataObject
) -> None:
    """Planning twice, or with the live list in another order, gives the same plan."""
    shuffled = data.draw(st.permutations(live))
    assert plan(desired, live) == plan(desired, live) == plan(desired, shuffled)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(desired=apps(), live=fleets(), prune=st.booleans(), detect=st.booleans())
def test_unmanaged_machines_never_appear_in_actions(
    desired: DesiredApp, live: list[LiveMachine], prune: bool, detect: bool
) -> None:
    """No action, drift report or orphan ever names a machine the reconciler does not own."""
    desired = desired.model_copy(update={"detect_only": detect})
    result = plan(desired, live, prune=prune, allow_empty=True)
    unmanaged = _unmanaged_ids(live)
    touched = {a.machine_id for a in result.actions if not isinstance(a, Create)}
    touched |= {d.machine_id for d in result.drift if d.machine_id}
    touched |= {o.machine_id for o in result.orphans}
    assert not touched & unmanaged
    assert {u.machine_id for u in result.unmanaged} == unmanaged


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    previous=apps(),
    desired=apps(),
    live=fleets(),
    detect=st.booleans(),
)
def test_secrets_never_reach_text_or_json(
    previous: DesiredApp, desired: DesiredApp, live: list[LiveMachine], detect: bool
) -> None:
    """Secret env values (by name, here) appear neither in rendered text nor in JSON."""
    fly = FakeFly(start=1_000_000)
    live = fly.apply(plan(previous, live, allow_empty=True, prune=True), live) if live else live
    desired = desired.model_copy(update={"detect_only": detect})
    plans = [plan(desired, []), plan(desired, live, allow_empty=True, prune=True)]
    outputs = render(plans) + to_json(plans) + repr(plans)
    secrets = {
        value
        for app in (previous, desired)
        for group in app.groups
        for name, value in (group.config.env or {}).items()
        if name not in group.shown_env
    }
    secrets |= {v for m in live for k, v in (m.config.get("env") or {}).items() if k != "LOG_LEVEL"}
    assert "info" not in secrets
    leaked = {s for s in secrets if s in outputs}
    assert not leaked
