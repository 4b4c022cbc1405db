"""Read the desired-state directory into validated apps, with errors that point at a line.

An edge module: it reads files (and, for references, environment variables and secret files),
synchronously, and nothing else.  Steps for every ``*.yaml`` / ``*.yml`` file, in name order:

0. read at most :attr:`LoadLimits.max_bytes` of a regular file (``stat`` first: FIFOs, symlink
   loops and dangling symlinks are errors naming the file, never skipped or opened);
1. compose the YAML with PyYAML within :class:`LoadLimits` (depth, nodes, alias expansion,
   time; :mod:`controller.loading.yamldoc`), keeping the node marks, rejecting duplicate keys and
   merge keys (``<<``); mapping keys are always the text as written (no YAML 1.1 ``on`` -> true);
2. resolve references in ``env`` values (the config's and each ``processes[].env``):

   * ``${ENV:NAME}``: the variable ``NAME`` of the injected ``environ`` (an error if unset);
   * ``${ENV:NAME:-default}``: the same, or ``default`` when unset (lets an example run on a
     fresh machine);
   * ``${FILE:/path}``: the file's text, one trailing newline removed (relative paths are
     relative to the YAML file's directory); made for systemd credentials and mounted Secrets;
   * ``$${...}``: a literal ``${...}``.

   A reference is the whole value.  Any other value of the form ``${...}`` is an error, and so is
   a reference outside ``env``.  Resolved values are as sensitive as every env value: no
   message here or anywhere else prints one;
3. validate with :mod:`controller.model.desired`, merge ``defaults.config`` under every group;
4. map each problem back to ``file:line:column: field.path: message``.

A bad file blocks its own app only.  Two files claiming one app block that app, with an error in
each file naming the other.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from controller.loading.yamldoc import (
    DEFAULT_LIMITS,
    DocumentError,
    LoadLimits,
    Marks,
    PathParts,
    parse_yaml,
)
from controller.model.desired import (
    DesiredApp,
    DesiredFile,
    DesiredStateInvalid,
    Issue,
    build_app,
    issues_from,
)
from controller.planning.normalize import format_path

__all__ = ["LoadError", "LoadLimits", "LoadResult", "load_dir", "load_file", "load_text"]


@dataclass(frozen=True, slots=True)
class LoadError:
    """One problem in one file.  ``str()`` gives ``file:line:col: path: message``."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class LoadResult:
    """Every file of a directory: the apps that loaded, and the errors of those that did not."""

    apps: Mapping[str, DesiredApp] = field(default_factory=dict)
    """Apps that loaded cleanly, by name, in file-name order."""
    errors: tuple[LoadError, ...] = ()
    blocked: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Apps whose desired state is unusable this pass (app -> files); leave them alone."""
    files: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No errors at all."""
        return not self.errors


# ------------------------------------------------------------------------------ references

_REF = re.compile(r"^\$\{(ENV|FILE):(.*)\}$", re.DOTALL)
_ENV_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_LOOKS_LIKE_REF = re.compile(r"^\$\{.*\}$", re.DOTALL)


def _resolve(value: str, environ: Mapping[str, str], base_dir: Path) -> str:
    """Resolve one env value; raises ValueError with a message that never contains a secret."""
    if value.startswith("$${"):
        return value[1:]
    if not _LOOKS_LIKE_REF.match(value):
        return value
    ref = _REF.match(value)
    if ref is None:
        raise ValueError(
            "invalid reference: use ${ENV:NAME}, ${ENV:NAME:-default} or ${FILE:/path} "
            "(write $${...} for a literal)"
        )
    kind, body = ref.groups()
    if kind == "ENV":
        env = _ENV_REF.match(body)
        if env is None:
            raise ValueError(f"invalid reference ${{ENV:{body}}}: not a variable name")
        name, default = env.groups()
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set (referenced as ${{ENV:{name}}})")
    if not body:
        raise ValueError("invalid reference ${FILE:}: no path")
    path = Path(body) if Path(body).is_absolute() else base_dir / body
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path} (${{FILE:...}}): {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} (${{FILE:...}}) is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def _env_maps(data: dict[str, Any]) -> list[PathParts]:
    """Paths of every env map a reference may appear in."""
    configs: list[PathParts] = []
    defaults = data.get("defaults")
    if isinstance(defaults, dict) and isinstance(defaults.get("config"), dict):
        configs.append(("defaults", "config"))
    groups = data.get("groups")
    if isinstance(groups, dict):
        configs.extend(
            ("groups", name, "config")
            for name, group in groups.items()
            if isinstance(group, dict) and isinstance(group.get("config"), dict)
        )
    out: list[PathParts] = []
    for where in configs:
        config = _get(data, where)
        out.append((*where, "env"))
        processes = config.get("processes")
        if isinstance(processes, list):
            out.extend((*where, "processes", i, "env") for i in range(len(processes)))
    return out


def _get(data: Any, path: PathParts) -> Any:
    for part in path:
        data = data[part]
    return data


def _referenced_env(data: dict[str, Any]) -> set[str]:
    """Env names whose value is a reference: secret, by :mod:`controller.core.redaction`."""
    out: set[str] = set()
    for where in _env_maps(data):
        try:
            env = _get(data, where)
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(env, dict):
            out.update(k for k, v in env.items() if isinstance(v, str) and _REF.match(v))
    return out


def _resolve_refs(
    data: dict[str, Any], environ: Mapping[str, str], base_dir: Path
) -> list[tuple[PathParts, str]]:
    problems: list[tuple[PathParts, str]] = []
    allowed: set[PathParts] = set()
    for where in _env_maps(data):
        try:
            env = _get(data, where)
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(env, dict):
            continue
        for key, value in env.items():
            if isinstance(value, str):
                allowed.add((*where, key))
                try:
                    env[key] = _resolve(value, environ, base_dir)
                except ValueError as exc:
                    problems.append(((*where, key), str(exc)))

    def scan(value: Any, path: PathParts) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                scan(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                scan(item, (*path, i))
        elif (
            isinstance(value, str)
            and path not in allowed
            and value.startswith(("${ENV:", "${FILE:"))
        ):
            problems.append((path, "references are only resolved in env values"))

    scan(data, ())
    return problems


# ------------------------------------------------------------------------------ errors -> marks


def _locate(loc: PathParts, data: Any, marks: Marks) -> tuple[yaml.Mark | None, PathParts, bool]:
    """Map a validation loc to (mark, clean path, whether the path exists in the file)."""
    clean: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if part == "[key]":
            return marks.keys.get(tuple(clean)), tuple(clean), True
        in_map = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_map or in_list:
            node = node[part]
            clean.append(part)
        elif i == len(loc) - 1 and isinstance(part, str) and isinstance(node, dict):
            clean.append(part)  # a missing field: point at the object that lacks it
            parent = tuple(clean[:-1])
            return marks.values.get(parent), tuple(clean), False
        # else: a pydantic artefact (union member or validator name): skip it
    return marks.values.get(tuple(clean)), tuple(clean), True


def _error(file: str, mark: yaml.Mark | None, path: PathParts, message: str) -> LoadError:
    return LoadError(
        file=file,
        line=None if mark is None else mark.line + 1,
        column=None if mark is None else mark.column + 1,
        path=format_path(path),
        message=message,
    )


def _from_issues(file: str, issues: list[Issue], data: Any, marks: Marks) -> list[LoadError]:
    out: list[LoadError] = []
    seen: set[tuple[PathParts, str]] = set()
    for issue in issues:
        mark, path, exists = _locate(issue.loc, data, marks)
        if exists and issue.msg.startswith("unknown field"):
            mark = marks.keys.get(path, mark)  # point at the misspelt key itself
        if (path, issue.msg) in seen:
            continue
        seen.add((path, issue.msg))
        out.append(_error(file, mark, path, issue.msg))
    return out


# ------------------------------------------------------------------------------ public API

_APP_LINE = re.compile(r"^app:[ \t]*['\"]?([a-z0-9][a-z0-9-]*)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class _Loaded:
    app: DesiredApp | None
    name: str | None
    errors: list[LoadError]
    app_mark: yaml.Mark | None = None


def _whole_file(source: str, message: str, name: str | None = None) -> _Loaded:
    return _Loaded(None, name, [LoadError(source, None, None, "", message)])


def _load_text(
    text: str, source: str, environ: Mapping[str, str], base_dir: Path, limits: LoadLimits
) -> _Loaded:
    guessed = _APP_LINE.search(text)
    name = guessed.group(1) if guessed else None
    try:
        data, marks = parse_yaml(text, limits=limits)
    except DocumentError as exc:
        return _Loaded(None, name, [_error(source, exc.mark, exc.path, exc.message)])
    except yaml.MarkedYAMLError as exc:  # the snippet of the file is left out on purpose
        problem = exc.problem or exc.context or "invalid YAML"
        return _Loaded(
            None, name, [_error(source, exc.problem_mark, (), f"invalid YAML: {problem}")]
        )
    except yaml.YAMLError as exc:
        return _whole_file(source, f"invalid YAML: {type(exc).__name__}", name)
    except (RecursionError, MemoryError) as exc:  # a last resort: the limits should come first
        return _whole_file(source, f"document too complex to read ({type(exc).__name__})", name)
    if data is None:
        return _whole_file(source, "empty file")
    if not isinstance(data, dict):
        return _Loaded(None, None, [_error(source, marks.values.get(()), (), "expected a mapping")])
    app_mark = marks.values.get(("app",))
    name = data["app"] if isinstance(data.get("app"), str) else name
    referenced = _referenced_env(data)
    problems = _resolve_refs(data, environ, base_dir)
    errors = [_error(source, marks.values.get(path), path, msg) for path, msg in problems]
    try:  # validate even when a reference failed, to report every problem in one go
        file = DesiredFile.model_validate(data)
        app = build_app(file, source, referenced=referenced)
    except ValidationError as exc:
        errors.extend(_from_issues(source, issues_from(exc), data, marks))
    except DesiredStateInvalid as exc:
        errors.extend(_from_issues(source, list(exc.issues), data, marks))
    else:
        if not errors:
            return _Loaded(app, file.app, [], app_mark)
    errors.sort(key=lambda e: (e.line or 0, e.column or 0))
    return _Loaded(None, name, errors, app_mark)


def load_text(
    text: str,
    source: str,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    limits: LoadLimits = DEFAULT_LIMITS,
) -> tuple[DesiredApp | None, list[LoadError]]:
    """Load one document (``source`` names it in errors): ``(app or None, errors)``."""
    env = os.environ if environ is None else environ
    loaded = _load_text(text, source, env, base_dir or Path(source).parent, limits)
    return loaded.app, loaded.errors


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, refusing anything else or anything larger than the limit.

    ``stat`` first, so a FIFO or device named ``*.yaml`` is never opened (opening a FIFO
    blocks), and a symlink loop or a dangling symlink fails here with its own message.
    """
    info = path.stat()  # follows symlinks: ELOOP / ENOENT surface as OSError
    if not stat.S_ISREG(info.st_mode):
        raise _Unreadable("not a regular file")
    if info.st_size > max_bytes:
        raise _Unreadable(f"file is {info.st_size} bytes, more than the {max_bytes}-byte limit")
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)  # the file may have grown since stat
    if len(data) > max_bytes:
        raise _Unreadable(f"file is more than the {max_bytes}-byte limit")
    return data


class _Unreadable(Exception):
    """A file that cannot be loaded at all; the message says why."""


def _load_path(path: Path, environ: Mapping[str, str], limits: LoadLimits) -> _Loaded:
    source = str(path)
    try:
        text = _read_bounded(path, limits.max_bytes).decode("utf-8")
    except _Unreadable as exc:
        return _whole_file(source, f"cannot read: {exc}")
    except OSError as exc:
        if path.is_symlink() and not path.exists():
            reason = (
                "too many levels of symbolic links"
                if exc.errno == errno.ELOOP
                else ("dangling symbolic link")
            )
            return _whole_file(source, f"cannot read: {reason}")
        return _whole_file(source, f"cannot read: {exc.strerror or type(exc).__name__}")
    except UnicodeDecodeError as exc:
        return _whole_file(source, f"not UTF-8 text (invalid byte at offset {exc.start})")
    return _load_text(text, source, environ, path.parent, limits)


def load_file(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    limits: LoadLimits = DEFAULT_LIMITS,
) -> tuple[DesiredApp | None, list[LoadError]]:
    """Load one file: ``(app or None, errors)``."""
    loaded = _load_path(Path(path), os.environ if environ is None else environ, limits)
    return loaded.app, loaded.errors


def _candidates(root: Path) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` entry that is not hidden and not a directory, by name.

    Unreadable entries (symlink loops, dangling symlinks, FIFOs, no permission) are kept on
    purpose: loading them gives an error that names them, instead of a silent skip.
    """
    out: list[Path] = []
    for entry in root.iterdir():
        if entry.suffix not in (".yaml", ".yml") or entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                continue
        except OSError:  # is_dir() swallows most errors; whatever is left, report it
            pass
        out.append(entry)
    return sorted(out)


def load_dir(
    directory: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    limits: LoadLimits = DEFAULT_LIMITS,
) -> LoadResult:
    """Load every ``*.yaml`` / ``*.yml`` file of ``directory`` (not recursive, name order).

    ``environ`` (default ``os.environ``) resolves ``${ENV:..}`` references.  An entry that
    cannot be read is an error naming it, never skipped.
    """
    env = os.environ if environ is None else environ
    root = Path(directory)
    if not root.is_dir():
        return LoadResult(errors=(LoadError(str(root), None, None, "", "not a directory"),))
    try:
        paths = _candidates(root)
    except OSError as exc:
        message = f"cannot list: {exc.strerror or type(exc).__name__}"
        return LoadResult(errors=(LoadError(str(root), None, None, "", message),))
    claims: dict[str, list[tuple[str, _Loaded]]] = {}
    errors: list[LoadError] = []
    for path in paths:
        loaded = _load_path(path, env, limits)
        errors.extend(loaded.errors)
        if loaded.name is not None:
            claims.setdefault(loaded.name, []).append((str(path), loaded))
    apps: dict[str, DesiredApp] = {}
    blocked: dict[str, tuple[str, ...]] = {}
    for name, found in claims.items():
        files = tuple(file for file, _ in found)
        if len(found) > 1:
            for file, loaded in found:
                others = ", ".join(f for f in files if f != file)
                errors.append(
                    _error(
                        file, loaded.app_mark, ("app",), f"app {name} is also declared in {others}"
                    )
                )
            blocked[name] = files
        elif found[0][1].app is None:
            blocked[name] = files
        else:
            apps[name] = found[0][1].app
    errors.sort(key=lambda e: (e.file, e.line or 0, e.column or 0))
    return LoadResult(
        apps=apps, errors=tuple(errors), blocked=blocked, files=tuple(str(p) for p in paths)
    )
