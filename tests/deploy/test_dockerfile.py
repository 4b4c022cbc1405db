"""The Dockerfile's essentials, checked without a Docker engine: two stages, a pinned slim base,
only the build inputs copied, a non-root numeric user, no build tools in the final stage, and an
ENTRYPOINT/CMD that the installed CLI (and the chart's default arguments) agree with."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from controller.cli.commands import build_parser
from controller.cli.run import settings_overrides
from controller.settings import DaemonSettings, load_daemon_settings
from tests.deploy.conftest import (
    CHART_DIR,
    DOCKERFILE,
    REPO,
    console_script,
    container,
    pyproject,
    render_chart,
)

BASE = re.compile(
    r"^python:(?P<version>3\.(?P<minor>\d+)\.\d+)-slim-(?P<distro>bookworm|trixie)"
    r"@sha256:[0-9a-f]{64}$"
)
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|apt-get|apt|apk|dnf|yum|cargo|rustc)\b"
)


@dataclass
class Stage:
    """One FROM ... stage: its base, alias and instructions ``(INSTRUCTION, arguments)``."""

    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        """Arguments of every ``name`` instruction of the stage."""
        return [args for instr, args in self.instructions if instr == name]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, continuations joined, global ARGs resolved."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "dangling line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            words = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], args)
            parts = words.split()
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], alias))
        elif not stages:
            assert instr == "ARG", f"{instr} before the first FROM"
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip()
        else:
            stages[-1].instructions.append((instr, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The parsed Dockerfile."""
    return parse_dockerfile(DOCKERFILE)


def exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) ENTRYPOINT/CMD."""
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return [str(v) for v in value]


def test_multi_stage_build(stages: list[Stage]) -> None:
    """A builder stage makes the wheel; the final stage copies only its result from it."""
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.alias == "builder"
    assert any("pip wheel" in run for run in builder.all("RUN"))
    copies = final.all("COPY")
    assert copies
    assert all(c.startswith("--from=builder ") for c in copies), copies


def test_base_image_is_pinned_and_slim(stages: list[Stage]) -> None:
    """Every stage uses python:X.Y.Z-slim-DISTRO@sha256:DIGEST, satisfying requires-python."""
    bases = {stage.base for stage in stages}
    assert len(bases) == 1, "builder and final stage share one base (the venv's python path)"
    match = BASE.match(bases.pop())
    assert match, "base image must be pinned by precise tag and digest"
    required = re.match(r">=3\.(\d+)", pyproject()["project"]["requires-python"])
    assert required
    assert int(match["minor"]) >= int(required[1])


def test_copies_only_build_inputs(stages: list[Stage]) -> None:
    """No `COPY . .`: the builder copies pyproject.toml, README.md and controller/ only."""
    sources: list[str] = []
    for copy in stages[0].all("COPY"):
        words = [w for w in shlex.split(copy) if not w.startswith("--")]
        sources.extend(words[:-1])
    assert sorted(sources) == ["README.md", "controller/", "pyproject.toml"]
    for source in sources:
        assert (REPO / source).exists(), source
    assert pyproject()["project"]["readme"] == "README.md"  # the build needs it
    assert all(".." not in s and s not in (".", "./") for s in sources)


def test_runs_as_non_root_numeric_user(stages: list[Stage]) -> None:
    """The final USER is a numeric non-zero uid:gid, the same the chart's pods run as."""
    (user,) = stages[-1].all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)
    assert values["securityContext"]["runAsUser"] == int(uid)


def test_no_build_tools_in_final_stage(stages: list[Stage]) -> None:
    """The final stage installs no compiler or package, and removes pip and setuptools."""
    runs = " ".join(stages[-1].all("RUN"))
    assert not BUILD_TOOLS.search(runs), runs
    assert "pip uninstall" in runs
    assert "setuptools" in runs
    assert not stages[-1].all("ADD")


def test_entrypoint_is_the_console_script(stages: list[Stage]) -> None:
    """ENTRYPOINT is the console script pyproject declares, on the final stage's PATH."""
    scripts = pyproject()["project"]["scripts"]
    (entrypoint,) = stages[-1].all("ENTRYPOINT")
    assert exec_form(entrypoint) == list(scripts)
    assert scripts["machine-reconciler"] == "controller.cli:main"
    env = " ".join(stages[-1].all("ENV"))
    assert "PATH=/opt/machine-reconciler/bin:" in env
    assert any("/opt/machine-reconciler" in run for run in stages[0].all("RUN"))


def test_cmd_runs_the_daemon_on_the_chart_path(stages: list[Stage], chart: helm.Chart) -> None:
    """CMD `run /etc/machine-reconciler/desired`: a real subcommand and the chart's mount path."""
    # The directory is created in the image, so the CMD works without a mount too.
    (cmd,) = stages[-1].all("CMD")
    argv = exec_form(cmd)
    assert argv == ["run", "/etc/machine-reconciler/desired"]
    result = subprocess.run(
        [str(console_script()), argv[0], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--health-bind" in result.stdout
    assert any(f"mkdir -p {argv[1]}" in run for run in stages[-1].all("RUN"))
    main = container(render_chart(chart)["docs"])
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert argv[1] in mounts
    assert main["args"][:2] == argv


@pytest.mark.parametrize(
    "values", [{}, {"sharding": {"enabled": True}, "replicaCount": 4}], ids=["default", "sharded"]
)
def test_chart_args_are_accepted_by_the_cli(chart: helm.Chart, values: dict[str, Any]) -> None:
    """The chart's container args parse with the real CLI parser into valid daemon settings."""
    main = container(render_chart(chart, values)["docs"])
    # Kubernetes expands $(POD_INDEX) from the pod-index label; pod 3 of 4 here.
    args = [a.replace("$(POD_INDEX)", "3") for a in main["args"]]
    namespace = build_parser().parse_args(args)
    assert namespace.command == "run"
    settings = load_daemon_settings(settings_overrides(namespace))
    assert str(settings.desired_dir) == "/etc/machine-reconciler/desired"
    assert settings.health_host == "0.0.0.0"  # the kubelet probes the pod IP
    assert settings.log_format == "json"
    if values:
        assert (settings.shard_index, settings.shard_count) == (3, 4)


def test_exposed_port_and_healthcheck_match_the_daemon(stages: list[Stage]) -> None:
    """EXPOSE and HEALTHCHECK use the daemon's default health port and /healthz."""
    default_port = DaemonSettings().health_port
    assert stages[-1].all("EXPOSE") == [str(default_port)]
    (check,) = stages[-1].all("HEALTHCHECK")
    assert f"127.0.0.1:{default_port}/healthz" in check
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    assert values["health"]["port"] == default_port
