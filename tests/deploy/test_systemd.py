"""The systemd units: ``systemd-analyze verify`` and ``security`` on every unit, the hardening
directives one by one, the example settings files, and the unit's exact ``ExecStart=`` command
line run against the emulator with a notify socket bound by the test (READY, WATCHDOG,
STOPPING, exit 0)."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.daemon.sdnotify import Notifier
from controller.settings import DaemonSettings, load_daemon_settings
from tests.deploy.conftest import SYSTEMD_DIR, console_script
from tests.e2e.conftest import TOKEN, control

DAEMON = "machine-reconciler.service"
APPLY = "machine-reconciler-apply.service"
TIMER = "machine-reconciler-apply.timer"
SERVICES = (DAEMON, APPLY)
UNITS = (DAEMON, APPLY, TIMER)
INSTALLED_BINARY = "/usr/local/bin/machine-reconciler"
ETC = "/etc/machine-reconciler"

#: `systemd-analyze security` threshold, on its 0..100 scale (10 x the printed exposure).
#: The units measure 1.1 ("OK"; what is left is the network access a client of a public API
#: needs, see systemd/README.md).  12 leaves one rounding step and fails on any real loss such
#: as a capability, namespaces or the ~@privileged filter.
EXPOSURE_THRESHOLD = 12


# ------------------------------------------------------------------------------ unit parsing


@dataclass
class Unit:
    """A unit file as ``section -> [(key, value), ...]`` (repeated keys kept in order)."""

    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def values(self, section: str, key: str) -> list[str]:
        """Every value of ``key`` in ``section``."""
        return [v for k, v in self.sections.get(section, []) if k == key]

    def one(self, section: str, key: str) -> str:
        """The single value of ``key`` in ``section``."""
        found = self.values(section, key)
        assert len(found) == 1, f"[{section}] {key}= appears {len(found)} times"
        return found[0]


def parse_unit(path: Path) -> Unit:
    """Parse a unit file like systemd does: sections, comments, backslash continuations."""
    unit = Unit()
    section = ""
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.sections.setdefault(section, [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        unit.sections[section].append((key.strip(), value.strip()))
    return unit


def seconds(value: str) -> float:
    """A systemd time span (``30s``, ``10min``, ``1min 30s``, plain seconds) in seconds."""
    scale = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "": 1}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * scale[unit]
    return total


@pytest.fixture(scope="module")
def units() -> dict[str, Unit]:
    """Every unit file of systemd/, parsed."""
    return {name: parse_unit(SYSTEMD_DIR / name) for name in UNITS}


# ------------------------------------------------------------------------ systemd-analyze


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """The systemd-analyze binary (`make test` installs Debian's systemd when it is missing)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip(
            "systemd-analyze is not installed and `make test` could not install it "
            "(not root, or no apt-get): the unit checks need Debian's `systemd` package"
        )
    return found


@pytest.fixture(scope="module")
def verifiable_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the units whose ExecStart binary is the venv's console script.

    `verify` insists that the binary exists; the installed path (/usr/local/bin) does not on a
    test machine, so only that path is rewritten, and every other line is the shipped one."""
    target = tmp_path_factory.mktemp("units")
    script = str(console_script())
    for name in UNITS:
        text = (SYSTEMD_DIR / name).read_text(encoding="utf-8")
        (target / name).write_text(text.replace(INSTALLED_BINARY, script), encoding="utf-8")
    return target


def test_units_verify_without_warnings(systemd_analyze: str, verifiable_units: Path) -> None:
    """`systemd-analyze verify` accepts every unit and prints nothing on stderr."""
    result = subprocess.run(
        [
            systemd_analyze,
            "verify",
            "--recursive-errors=no",
            *(str(verifiable_units / u) for u in UNITS),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_security_exposure_is_low(
    systemd_analyze: str, verifiable_units: Path, service: str
) -> None:
    """`systemd-analyze security --offline=yes --threshold=12` passes (exposure <= 1.2)."""
    result = subprocess.run(
        [
            systemd_analyze,
            "security",
            "--offline=yes",
            f"--threshold={EXPOSURE_THRESHOLD}",
            "--no-pager",
            str(verifiable_units / service),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert match, output
    assert float(match.group(1)) * 10 <= EXPOSURE_THRESHOLD, output


# -------------------------------------------------------------------------- the directives

#: What issue 5 asks of both services, directive by directive (the score is coarse: several of
#: these are implied by DynamicUser= and do not move it, so each is checked here).
HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectControlGroups": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
}


@pytest.mark.parametrize("service", SERVICES)
def test_hardening_directives(units: dict[str, Unit], service: str) -> None:
    """Each service sets every sandboxing directive, the syscall filter and the credential."""
    unit = units[service]
    for key, expected in HARDENING.items():
        assert unit.one("Service", key) == expected, key
    assert unit.values("Service", "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
    ]
    assert unit.values("Service", "StateDirectory")
    assert unit.one("Service", "LoadCredential") == f"fly-api-token:{ETC}/fly-api-token"
    assert "MACHINE_RECONCILER_API_TOKEN_FILE=%d/fly-api-token" in unit.values(
        "Service", "Environment"
    )
    assert unit.one("Service", "IPAddressDeny")  # link-local (metadata) and multicast


def test_daemon_unit_lifecycle(units: dict[str, Unit]) -> None:
    """Type=notify, restart limits, and stop/watchdog timeouts that fit the daemon's own."""
    unit = units[DAEMON]
    assert unit.one("Service", "Type") == "notify"
    assert unit.one("Service", "NotifyAccess") == "main"
    assert unit.one("Service", "Restart") == "on-failure"
    assert seconds(unit.one("Unit", "StartLimitIntervalSec")) > 0
    assert int(unit.one("Unit", "StartLimitBurst")) >= 1
    # SIGTERM waits the grace period, then releases leases: the stop timeout is above both the
    # daemon's default and the example config's value.
    example = load_daemon_settings(config_file=SYSTEMD_DIR / "config.toml.example")
    stop = seconds(unit.one("Service", "TimeoutStopSec"))
    assert stop > DaemonSettings().grace_period
    assert stop > example.grace_period
    # The daemon pings every WATCHDOG_USEC/2: two pings per watchdog period.
    watchdog = seconds(unit.one("Service", "WatchdogSec"))
    notifier = Notifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": str(int(watchdog * 1e6))})
    assert notifier.watchdog_interval == pytest.approx(watchdog / 2)
    assert 10 <= watchdog <= 120
    assert unit.one("Install", "WantedBy") == "multi-user.target"


def test_apply_units(units: dict[str, Unit]) -> None:
    """The timer starts the one-shot apply service, which applies without a prompt."""
    timer = units[TIMER]
    assert timer.one("Timer", "Unit") == APPLY
    assert timer.values("Timer", "OnUnitActiveSec") or timer.values("Timer", "OnCalendar")
    assert timer.one("Install", "WantedBy") == "timers.target"
    service = units[APPLY]
    assert service.one("Service", "Type") == "oneshot"
    argv = shlex.split(service.one("Service", "ExecStart"))
    assert argv[0] == INSTALLED_BINARY
    assert "apply" in argv
    assert "--yes" in argv
    assert f"{ETC}/desired" in argv
    subcommand = argv[argv.index("apply") :]
    check = subprocess.run(
        [str(console_script()), *argv[1 : argv.index("apply")], subcommand[0], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_example_config_is_valid() -> None:
    """config.toml.example loads through the daemon's own settings loader (no unknown keys)."""
    settings = load_daemon_settings(config_file=SYSTEMD_DIR / "config.toml.example")
    assert settings.health_bind == "127.0.0.1:9440"
    assert settings.log_format == "json"


def test_example_env_names_real_settings() -> None:
    """Every MACHINE_RECONCILER_* name in the example env file is a daemon setting."""
    names = re.findall(
        r"^#?\s*MACHINE_RECONCILER_([A-Z0-9_]+)=",
        (SYSTEMD_DIR / "machine-reconciler.env.example").read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    assert names
    fields = set(DaemonSettings.model_fields)
    assert {n.lower() for n in names} <= fields
    assert "FLY_API_TOKEN=" not in (SYSTEMD_DIR / "machine-reconciler.env.example").read_text(
        encoding="utf-8"
    ).replace("#", "")


# ----------------------------------------------------------- the ExecStart line, for real

#: Runs the daemon the way systemd would with MemoryDenyWriteExecute= (the kernel's own
#: PR_SET_MDWE, Linux 6.3+, preserved across execve) and WATCHDOG_PID= set to the main pid.
_LAUNCHER = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
ok = libc.prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
sys.stderr.write(f"mdwe={int(ok)}\\n"); sys.stderr.flush()
os.environ["WATCHDOG_PID"] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])
"""

#: One machine without checks: its create ends with a smoke period (5 s instead of the default
#: 10 s: long enough that SIGTERM comes while it runs, short enough not to be waited out twice).
SMOKE_APP = """\
app: deploy-smoke
defaults:
  config:
    image: registry.fly.io/deploy-smoke:v1
    guest: {cpu_kind: shared, cpus: 1, memory_mb: 256}
groups:
  worker:
    regions: {ams: 1}
    update: {smoke_period: 5s}
"""


def _kernel_has_mdwe() -> bool:
    match = re.match(r"(\d+)\.(\d+)", platform.release())
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (6, 3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """NOTIFY_SOCKET: a unix datagram socket bound by the test, as systemd binds its own."""
    path = tmp_path / "notify"
    if len(str(path)) > 100:  # sun_path holds ~108 bytes
        path = Path(os.path.realpath(os.environ.get("TMPDIR", "/tmp"))) / f"mr-{os.getpid()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.25)
    yield sock, str(path)
    sock.close()
    path.unlink(missing_ok=True)


def _expand(value: str, specifiers: dict[str, str]) -> str:
    for spec, replacement in specifiers.items():
        value = value.replace(spec, replacement)
    return value


def _map_path(value: str, root: Path) -> str:
    return str(root / value.lstrip("/")) if value.startswith(f"{ETC}/") or value == ETC else value


def _environment_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def test_execstart_runs_against_emulator(
    units: dict[str, Unit],
    emulator_url: str,
    notify_socket: tuple[socket.socket, str],
    tmp_path: Path,
) -> None:
    """The unit's exact ExecStart reconciles the emulator: READY, WATCHDOG, STOPPING, exit 0."""
    # With the unit's Environment=, LoadCredential=, EnvironmentFile= and WorkingDirectory=.
    url = emulator_url
    control(url, "PATCH", "/behaviour", {"boot_seconds": 0.1, "checks_pass_seconds": 0.1})
    control(url, "POST", "/seed", {"apps": [{"name": "deploy-smoke"}]})
    unit = units[DAEMON]
    root = tmp_path / "root"
    state = tmp_path / "state"
    credentials = tmp_path / "credentials"
    specifiers = {"%d": str(credentials), "%S": str(state), "%%": "%"}

    # /etc/machine-reconciler as an operator sets it up (systemd/README.md), inside tmp_path.
    etc = root / ETC.lstrip("/")
    (etc / "desired").mkdir(parents=True)
    (etc / "desired" / "deploy-smoke.yaml").write_text(SMOKE_APP, encoding="utf-8")
    shutil.copy(SYSTEMD_DIR / "config.toml.example", etc / "config.toml")
    (etc / "fly-api-token").write_text(TOKEN + "\n", encoding="utf-8")
    health_port = _free_port()
    (etc / "machine-reconciler.env").write_text(
        f"MACHINE_RECONCILER_API_URL={url}\n"
        f"MACHINE_RECONCILER_HEALTH_BIND=127.0.0.1:{health_port}\n"
        # The daemon reads /etc/machine-reconciler/config.toml by default; here it is mapped.
        f"MACHINE_RECONCILER_CONFIG={etc / 'config.toml'}\n",
        encoding="utf-8",
    )

    # LoadCredential=ID:PATH -> $CREDENTIALS_DIRECTORY/ID, read-only, like systemd does.
    credentials.mkdir()
    for spec in unit.values("Service", "LoadCredential"):
        name, _, source = spec.partition(":")
        shutil.copy(_map_path(source, root), credentials / name)
        (credentials / name).chmod(0o400)
    for directory in unit.values("Service", "StateDirectory"):
        (state / directory).mkdir(parents=True)

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLY_", "MACHINE_RECONCILER_", "NOTIFY_", "WATCHDOG_"))
    }
    for line in unit.values("Service", "Environment"):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            env[key] = _expand(value, specifiers)
    for spec in unit.values("Service", "EnvironmentFile"):
        path = Path(_map_path(spec.lstrip("-"), root))
        if path.exists() or not spec.startswith("-"):
            env.update(_environment_file(path))
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    env["NOTIFY_SOCKET"] = notify_socket[1]
    # Two pings a second instead of the unit's 15 s cadence (the ratio is checked above).
    env["WATCHDOG_USEC"] = "1000000"

    argv = shlex.split(unit.one("Service", "ExecStart"))
    assert argv[0] == INSTALLED_BINARY
    argv = [str(console_script()), *(_map_path(arg, root) for arg in argv[1:])]
    cwd = _expand(unit.one("Service", "WorkingDirectory"), specifiers)

    log = tmp_path / "daemon.log"  # a file, not a pipe: a full pipe would stall the daemon
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, *argv],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    sock = notify_socket[0]
    seen: list[str] = []

    def wait_for(line: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while seen.count(line) < count and time.monotonic() < deadline:
            try:
                seen.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                if proc.poll() is not None:
                    break  # exited, and nothing more is queued
        assert seen.count(line) >= count, f"no {line} (seen {seen}); {_log(proc, log)}"

    try:
        wait_for("READY=1")
        wait_for("WATCHDOG=1", count=2)
        assert any(s.startswith("STATUS=") for s in seen)
        base = f"http://127.0.0.1:{health_port}"
        metrics = httpx.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "machine_reconciler_last_successful_pass_timestamp_seconds" in metrics.text
        # The token came through the credential: /readyz turns 200 once the API (which accepts
        # only TOKEN) answered, and the emulator creates the declared machine.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            _machines(url, "deploy-smoke") and httpx.get(f"{base}/readyz", timeout=5).is_success
        ):
            time.sleep(0.2)
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200, _log(proc, log)
        assert len(_machines(url, "deploy-smoke")) == 1, _log(proc, log)

        # SIGTERM while the create is still in its smoke check: the daemon says STOPPING=1,
        # lets the operation finish, releases its lease and exits 0.
        proc.send_signal(signal.SIGTERM)
        wait_for("STOPPING=1")
        assert proc.wait(timeout=45) == 0, _log(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    now = time.time()
    leases = [m["lease"] for m in _machines(url, "deploy-smoke") if m.get("lease")]
    assert all(lease["expires_at"] <= now for lease in leases), leases
    if _kernel_has_mdwe():
        assert "mdwe=1" in log.read_text(), "MemoryDenyWriteExecute was not emulated"


def _machines(url: str, app: str) -> list[dict[str, Any]]:
    state = control(url, "GET", "/state")
    return [m for m in state["machines"] if m["app"] == app and m["state"] != "destroyed"]


def _log(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The daemon's exit code (if any) and the end of its stderr, for failure messages."""
    return f"rc={proc.poll()}; stderr:\n" + log.read_text(errors="replace")[-4000:]
