"""The emulator over real loopback HTTP (uvicorn in a thread): drops, log and shutdown."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from controller.emulator import Behaviour, EmulatorState, build_app, serve_in_thread
from controller.testing import FakeClock

TOKEN = "loopback-secret-token"
CREATE = {"config": {"image": "registry.fly.io/web:deployment-01"}}


@pytest.fixture
def served() -> Iterator[tuple[str, EmulatorState]]:
    app = build_app(clock=FakeClock(), seed=3, behaviour=Behaviour(rate_limits=False))
    emulator: EmulatorState = app.state.emulator
    emulator.seed_fixtures({"apps": [{"name": "web"}]})
    with serve_in_thread(app) as base_url:
        yield base_url, emulator


@pytest.fixture
def http(served) -> Iterator[httpx.Client]:
    base_url, _ = served
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as client:
        yield client


def test_serves_on_a_free_loopback_port(served, http: httpx.Client) -> None:
    """serve_in_thread picks a free 127.0.0.1 port and answers real HTTP requests."""
    base_url, _ = served
    assert base_url.startswith("http://127.0.0.1:")
    response = http.post("/v1/apps/web/machines", json=CREATE)
    assert response.status_code == 200
    assert response.headers["fly-request-id"].endswith("-iad")


def test_drop_before_over_http_is_a_protocol_error_and_no_machine(
    served, http: httpx.Client
) -> None:
    """drop=before closes the socket mid-response; nothing was created."""
    _, emulator = served
    emulator.add_fault({"method": "POST", "path": "/machines$", "drop": "before"})
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/apps/web/machines", json=CREATE)
    assert http.get("/v1/apps/web/machines").json() == []


def test_drop_after_over_http_is_a_protocol_error_but_machine_exists(
    served, http: httpx.Client
) -> None:
    """drop=after closes the socket mid-response after committing the create."""
    _, emulator = served
    emulator.add_fault({"method": "POST", "path": "/machines$", "drop": "after"})
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/apps/web/machines", json=CREATE)
    machines = http.get("/v1/apps/web/machines").json()
    assert len(machines) == 1
    assert machines[0]["config"]["image"] == CREATE["config"]["image"]


def test_request_log_over_http_never_contains_the_token(served, http: httpx.Client) -> None:
    """The log over HTTP lists header names and no token value."""
    base_url, _ = served
    http.get("/v1/apps/web/machines", params={"metadata.role": "web"})
    log = httpx.get(f"{base_url}/_emulator/requests").json()
    assert log[-1]["query"] == {"metadata.role": ["web"]}
    assert "authorization" in log[-1]["headers_present"]
    assert TOKEN not in json.dumps(log)


def test_server_shuts_down_and_frees_the_port() -> None:
    """Leaving the context stops the server; the port no longer accepts connections."""
    app = build_app(clock=FakeClock())
    with serve_in_thread(app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        assert httpx.get(f"{base_url}/_emulator/behaviour").status_code == 200
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_non_loopback_hosts_are_refused() -> None:
    """serve_in_thread only binds loopback addresses."""
    with pytest.raises(ValueError, match="loopback"), serve_in_thread(build_app(), host="0.0.0.0"):
        pass
