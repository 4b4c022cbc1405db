"""The desired-state loader: file:line:col errors, references, one bad file per app."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controller.loading.loader import LoadError, load_dir, load_file, load_text

GOOD = """\
app: acme-web
defaults:
  config:
    image: registry.fly.io/acme-web:v42
groups:
  web:
    regions: {ams: 2}
"""


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text))
    return path


def _errors(text: str, environ: dict[str, str] | None = None) -> list[str]:
    _, errors = load_text(textwrap.dedent(text), "desired_state/web.yaml", environ=environ or {})
    return [str(e) for e in errors]


def test_good_file_loads() -> None:
    """A valid file gives its app and no errors."""
    app, errors = load_text(GOOD, "desired_state/web.yaml", environ={})
    assert errors == []
    assert app is not None
    assert app.app == "acme-web"
    assert app.source == "desired_state/web.yaml"


def test_unknown_field_names_file_line_column_and_path() -> None:
    """A misspelt key is reported at its own position with the full field path."""
    text = """\
    app: acme-web
    groups:
      web:
        regions: {ams: 1}
        config:
          image: nginx:1
          guest:
            cpus: 1
            memry_mb: 512
    """
    assert _errors(text) == [
        "desired_state/web.yaml:9:9: groups.web.config.guest.memry_mb: unknown field; "
        "did you mean 'memory_mb'?"
    ]


def test_list_items_are_located() -> None:
    """Errors inside lists carry the index in the path and the item's position."""
    text = """\
    app: acme-web
    groups:
      web:
        regions: {ams: 1}
        config:
          image: nginx:1
          services:
            - internal_port: 8080
            - internal_port: 99999
    """
    (error,) = _errors(text)
    assert error.startswith(
        "desired_state/web.yaml:9:26: groups.web.config.services[1].internal_port: "
    )
    assert "65535" in error


def test_missing_field_points_at_the_parent() -> None:
    """A required field that is absent is reported where its object starts."""
    text = """\
    app: acme-web
    groups:
      web:
        regions: {ams: 1}
        config:
          image: nginx:1
          mounts:
            - path: /data
    """
    assert _errors(text) == [
        "desired_state/web.yaml:8:11: groups.web.config.mounts[0].volume: required field missing"
    ]


def test_bad_yaml_reports_position_without_file_contents() -> None:
    """A syntax error names the position and the problem, never a snippet of the file."""
    text = "app: acme-web\ngroups:\n  web: [unclosed\n  secret: hunter2\n"
    errors = _errors(text)
    assert len(errors) == 1
    assert errors[0].startswith("desired_state/web.yaml:4:")
    assert "invalid YAML" in errors[0]
    assert "hunter2" not in errors[0]


def test_duplicate_keys_are_errors() -> None:
    """A key given twice in one mapping is an error naming the first occurrence."""
    text = """\
    app: acme-web
    groups:
      web:
        regions: {ams: 1}
        config:
          image: nginx:1
          image: nginx:2
    """
    assert _errors(text) == [
        "desired_state/web.yaml:7:7: groups.web.config.image: "
        "duplicate key (first defined on line 6)"
    ]


def test_merge_keys_are_rejected() -> None:
    """YAML merge keys are refused (defaults.config is the way to share config)."""
    text = """\
    app: acme-web
    base: &base {image: nginx:1}
    groups:
      web:
        regions: {ams: 1}
        config:
          <<: *base
    """
    (error,) = _errors(text)
    assert "merge keys" in error


def test_keys_stay_text() -> None:
    """Mapping keys are taken as written (YAML 1.1 would turn ``ON`` into true)."""
    text = GOOD + "    config:\n      env: {ON: 'x', 'NO': 'y'}\n"
    app, errors = load_text(text, "x.yaml", environ={})
    assert errors == []
    assert app is not None
    assert app.groups[0].config.env == {"ON": "x", "NO": "y"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "x.yaml: empty file"),
        ("- a\n- b\n", "x.yaml:1:1: expected a mapping"),
        ("groups: {}\n", "x.yaml:1:1: app: required field missing"),
        ("app: Bad_Name\n", "x.yaml:1:6: app: invalid app name 'Bad_Name'"),
    ],
)
def test_document_shape_errors(text: str, message: str) -> None:
    """Empty files, non-mappings and a missing or invalid app are errors."""
    _, errors = load_text(text, "x.yaml", environ={})
    assert str(errors[0]).startswith(message)


def test_bad_region_is_located_at_the_key() -> None:
    """An invalid region code is reported at the key that spells it."""
    text = """\
    app: acme-web
    groups:
      web:
        regions:
          ams: 1
          Frankfurt: 2
        config: {image: nginx:1}
    """
    (error,) = _errors(text)
    assert error.startswith("desired_state/web.yaml:6:7: groups.web.regions.Frankfurt: invalid")


def test_bad_max_unavailable() -> None:
    """max_unavailable outside its range is reported with the field path."""
    text = GOOD + "    update: {max_unavailable: 1.5}\n"
    (error,) = _errors(text)
    assert error.startswith("desired_state/web.yaml:8:31: groups.web.update.max_unavailable: ")


def test_every_problem_is_reported_at_once() -> None:
    """Reference and validation errors of one file come back together, in line order."""
    text = """\
    app: acme-web
    groups:
      web:
        regions: {ams: 1, xx: 1}
        config:
          image: nginx:1
          env: {A: "${ENV:NOPE}"}
        update: {max_unavailable: 0}
    """
    errors = _errors(text)
    assert len(errors) == 3
    assert [e.split(":")[1] for e in errors] == ["4", "7", "8"]


# ------------------------------------------------------------------------------ references

ENV_FILE = GOOD + "    config:\n      env:\n        DB_URL: {ref}\n"


def _env(ref: str, environ: dict[str, str], base_dir: Path | None = None) -> tuple[str, list[str]]:
    app, errors = load_text(
        ENV_FILE.replace("{ref}", ref), "desired_state/web.yaml", environ=environ, base_dir=base_dir
    )
    value = "" if app is None else (app.groups[0].config.env or {}).get("DB_URL", "")
    return value, [str(e) for e in errors]


def test_env_reference_is_resolved() -> None:
    """${ENV:NAME} takes the value from the injected environment."""
    assert _env("${ENV:ACME_DB}", {"ACME_DB": "postgres://s3cr3t"}) == ("postgres://s3cr3t", [])


def test_env_reference_default() -> None:
    """${ENV:NAME:-default} falls back when the variable is unset."""
    assert _env("'${ENV:ACME_DB:-postgres://local}'", {}) == ("postgres://local", [])
    assert _env("'${ENV:ACME_DB:-postgres://local}'", {"ACME_DB": "x"}) == ("x", [])


def test_missing_env_reference_names_the_variable_only() -> None:
    """An unset variable is an error naming the field and the variable, nothing more."""
    value, errors = _env("${ENV:ACME_DB}", {"OTHER": "s3cr3t"})
    assert value == ""
    assert errors == [
        "desired_state/web.yaml:10:17: groups.web.config.env.DB_URL: "
        "environment variable ACME_DB is not set (referenced as ${ENV:ACME_DB})"
    ]


def test_file_reference(tmp_path: Path) -> None:
    """${FILE:path} reads the file (one trailing newline dropped), relative to the YAML."""
    (tmp_path / "db_url").write_text("postgres://from-file\n")
    assert _env("${FILE:db_url}", {}, tmp_path) == ("postgres://from-file", [])
    assert _env(f"${{FILE:{tmp_path / 'db_url'}}}", {}) == ("postgres://from-file", [])


def test_missing_file_reference(tmp_path: Path) -> None:
    """An unreadable file is an error naming the field and the path."""
    value, errors = _env("${FILE:/nonexistent/secret}", {}, tmp_path)
    assert value == ""
    assert errors[0].startswith("desired_state/web.yaml:10:17: groups.web.config.env.DB_URL: ")
    assert "/nonexistent/secret" in errors[0]


def test_literal_dollar_brace_escape() -> None:
    """$${...} is a literal ${...}."""
    assert _env("'$${HOME}'", {}) == ("${HOME}", [])


@pytest.mark.parametrize("ref", ["${env:X}", "${ENV:}", "${ENV:1X}", "${HOME}", "${FILE:}"])
def test_malformed_references(ref: str) -> None:
    """Anything shaped like a reference but not a valid one is an error (catches typos)."""
    value, errors = _env(f"'{ref}'", {"X": "y", "HOME": "/root"})
    assert value == ""
    assert "invalid reference" in errors[0]


def test_references_only_in_env() -> None:
    """References outside env values are rejected rather than sent to Fly verbatim."""
    text = GOOD.replace("registry.fly.io/acme-web:v42", "${ENV:IMAGE}")
    errors = _errors(text, {"IMAGE": "nginx"})
    assert errors[0].startswith("desired_state/web.yaml:4:12: defaults.config.image: references")


def test_process_env_references(tmp_path: Path) -> None:
    """References also resolve in processes[].env."""
    text = GOOD + "    config:\n      processes:\n        - env: {TOKEN: '${ENV:T}'}\n"
    app, errors = load_text(text, "x.yaml", environ={"T": "tok"})
    assert errors == []
    assert app is not None
    processes = app.groups[0].config.processes or []
    assert processes[0].env == {"TOKEN": "tok"}


def test_resolved_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    """Errors elsewhere in a file with resolved secrets do not print those secrets."""
    secret = "pa55w0rd-XYZZY"
    (tmp_path / "s").write_text(secret)
    text = GOOD + f"    config:\n      env: {{A: '${{FILE:{tmp_path / 's'}}}', B: '${{ENV:S}}'}}\n"
    text += "      guest: {memry_mb: 1}\n"
    _, errors = load_text(text, "x.yaml", environ={"S": secret})
    assert errors
    assert all(secret not in str(e) for e in errors)


# ------------------------------------------------------------------------------ directories


def test_directory_loads_in_name_order(tmp_path: Path) -> None:
    """Only *.yaml/*.yml files are read, sorted by name; hidden files are skipped."""
    _write(tmp_path, "b.yml", GOOD.replace("acme-web", "app-b"))
    _write(tmp_path, "a.yaml", GOOD.replace("acme-web", "app-a"))
    _write(tmp_path, "notes.txt", "not yaml")
    _write(tmp_path, ".hidden.yaml", "app: [")
    result = load_dir(tmp_path, environ={})
    assert result.ok
    assert list(result.apps) == ["app-a", "app-b"]
    assert result.files == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yml"))


def test_one_bad_file_does_not_affect_another(tmp_path: Path) -> None:
    """A broken file blocks its own app; the other apps still load."""
    _write(tmp_path, "good.yaml", GOOD)
    _write(tmp_path, "bad.yaml", GOOD.replace("acme-web", "acme-api").replace("ams", "AMS"))
    result = load_dir(tmp_path, environ={})
    assert list(result.apps) == ["acme-web"]
    assert result.blocked == {"acme-api": (str(tmp_path / "bad.yaml"),)}
    assert len(result.errors) == 1
    assert result.errors[0].file == str(tmp_path / "bad.yaml")
    assert not result.ok


def test_syntax_error_still_blocks_the_app_it_names(tmp_path: Path) -> None:
    """Even unparsable YAML blocks the app named on its ``app:`` line."""
    _write(tmp_path, "broken.yaml", "app: acme-api\ngroups: [\n")
    result = load_dir(tmp_path, environ={})
    assert result.blocked == {"acme-api": (str(tmp_path / "broken.yaml"),)}


def test_two_files_claiming_one_app(tmp_path: Path) -> None:
    """Two files for one app block it, with an error in each file naming the other."""
    first = _write(tmp_path, "a.yaml", GOOD)
    second = _write(tmp_path, "b.yaml", GOOD)
    _write(tmp_path, "c.yaml", GOOD.replace("acme-web", "acme-other"))
    result = load_dir(tmp_path, environ={})
    assert list(result.apps) == ["acme-other"]
    assert result.blocked == {"acme-web": (str(first), str(second))}
    assert [str(e) for e in result.errors] == [
        f"{first}:1:6: app: app acme-web is also declared in {second}",
        f"{second}:1:6: app: app acme-web is also declared in {first}",
    ]


def test_not_a_directory(tmp_path: Path) -> None:
    """A missing directory is one error, not an exception."""
    result = load_dir(tmp_path / "missing", environ={})
    assert [str(e) for e in result.errors] == [f"{tmp_path / 'missing'}: not a directory"]


def test_load_file_reads_from_disk(tmp_path: Path) -> None:
    """load_file reads one file and names it in errors."""
    path = _write(tmp_path, "x.yaml", "app: x\nprune: maybe\n")
    app, errors = load_file(path, environ={})
    assert app is None
    assert str(errors[0]).startswith(f"{path}:2:8: prune: ")


def test_unreadable_file(tmp_path: Path) -> None:
    """A file that cannot be read is an error without a position."""
    app, errors = load_file(tmp_path / "nope.yaml", environ={})
    assert app is None
    assert errors[0].line is None
    assert str(errors[0]).startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


def test_error_text_without_position() -> None:
    """LoadError prints file: path: message when it has no line."""
    assert str(LoadError("f.yaml", None, None, "app", "boom")) == "f.yaml: app: boom"
    assert str(LoadError("f.yaml", 3, 5, "", "boom")) == "f.yaml:3:5: boom"


def test_repository_example_loads_on_a_fresh_machine() -> None:
    """desired_state/ loads with an empty environment (``make demo`` needs no setup)."""
    root = Path(__file__).resolve().parents[2] / "desired_state"
    result = load_dir(root, environ={})
    assert result.errors == ()
    assert sorted(result.apps) == ["acme-jobs", "acme-web"]
    assert sum(len(app.groups) for app in result.apps.values()) >= 3


def test_env_values_must_be_quoted_strings() -> None:
    """A number in env gets a hint to quote it (and the value is not echoed)."""
    text = GOOD + "    config:\n      env: {PORT: 8080}\n"
    assert _errors(text) == [
        "desired_state/web.yaml:9:19: groups.web.config.env.PORT: "
        "env values must be strings: quote numbers and booleans"
    ]


def test_recursive_aliases_are_rejected() -> None:
    """A self-referencing YAML alias is an error, not a hang or a crash."""
    (error,) = _errors("app: a\nx: &x [*x]\n")
    assert error.startswith("desired_state/web.yaml:2:")
    assert "nests deeper than 64 levels" in error
