"""The built-in registry: every Tilt name is exposed; misuse reports the Tiltfile's file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla.dev.tiltfile import registry
from flotilla.dev.tiltfile.arguments import duration
from flotilla.dev.tiltfile.builtins import Builtins
from flotilla.dev.tiltfile.errors import TiltfileError, UsageError
from flotilla.dev.tiltfile.evaluator import evaluate
from flotilla.dev.tiltfile.registry import REGISTRY, builtin

# Tilt's names that flotilla dev implements (docs/dev.md lists them); the `_`-prefixed ones back
# the ext://restart_process and ext://namespace extensions.
TILT_NAMES = {
    "allow_k8s_contexts",
    "blob",
    "ci_settings",
    "custom_build",
    "dc_resource",
    "decode_json",
    "decode_yaml",
    "decode_yaml_stream",
    "default_registry",
    "docker_build",
    "docker_compose",
    "encode_json",
    "encode_yaml",
    "encode_yaml_stream",
    "exec_action",
    "fail",
    "fall_back_on",
    "helm",
    "http_get_action",
    "include",
    "initial_sync",
    "k8s_context",
    "k8s_namespace",
    "k8s_resource",
    "k8s_yaml",
    "kustomize",
    "link",
    "listdir",
    "local",
    "local_resource",
    "port_forward",
    "print",
    "probe",
    "read_file",
    "read_json",
    "read_yaml",
    "restart_container",
    "run",
    "sync",
    "tcp_socket_action",
    "trigger_mode",
    "update_settings",
    "version_settings",
    "warn",
    "watch_file",
    "watch_settings",
    "analytics_settings",
    "disable_snapshots",
    "docker_prune_settings",
    "enable_feature",
    "filter_yaml",
    "k8s_custom_deploy",
    "k8s_image_json_path",
    "k8s_kind",
    "load_dynamic",
    "read_yaml_stream",
    "secret_settings",
    "set_team",
    "_workload_ids",
    "_set_workload_name",
    "_local_git_repo",
    "_custom_build_with_restart",
    "_docker_build_with_restart",
    "_namespace_create",
    "_namespace_inject",
    "_namespace_yaml",
}


def test_the_registry_holds_every_tilt_name_and_each_is_a_method() -> None:
    assert set(REGISTRY) == TILT_NAMES
    for method in REGISTRY.values():
        assert callable(getattr(Builtins, method))


def test_every_registered_builtin_is_exposed_to_a_tiltfile(tmp_path: Path) -> None:
    names = sorted(n for n in REGISTRY if not n.startswith("_"))
    tf = tmp_path / "Tiltfile"
    tf.write_text("".join(f"print(type({n}))\n" for n in names))
    result, _ = evaluate(tf)
    assert len(result.logs) == len(names)
    assert set(result.logs) == {"python_callable_value"}


def test_extensions_expose_the_underscored_builtins(tmp_path: Path) -> None:
    tf = tmp_path / "Tiltfile"
    tf.write_text(
        "load('ext://namespace', 'namespace_yaml')\n"
        "load('ext://restart_process', 'docker_build_with_restart')\n"
        "print(type(namespace_yaml), type(docker_build_with_restart))\n"
    )
    result, _ = evaluate(tf)
    assert result.logs == ["python_callable_value python_callable_value"]


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(RuntimeError, match="'k8s_yaml' registered twice"):
        builtin("k8s_yaml")(lambda self: None)
    assert registry.REGISTRY["k8s_yaml"] == "k8s_yaml"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("k8s_resource()", "k8s_resource needs workload or new_name"),
        ("sync('src', 'relative/dir')", "sync remote_path 'relative/dir' must be absolute"),
        ("docker_build('', '.')", "docker_build: ref must be a non-empty image name"),
        ("trigger_mode(7)", "trigger_mode: invalid trigger_mode 7"),
        ("local_resource('x', readiness_probe=1)", "readiness_probe must be made with probe()"),
        ("k8s_yaml('missing.yaml')", "k8s_yaml: cannot read"),
        ("local('exit 3')", "local: command `exit 3` exited 3"),
        ("fail('stop here')", "fail: stop here"),
        ("k8s_yaml(nope=1)", "k8s_yaml: got an unexpected keyword argument 'nope'"),
        ("link()", "link: missing 1 required positional argument: 'url'"),
    ],
)
def test_misuse_raises_a_usage_error_at_the_tiltfile_line(
    tmp_path: Path, call: str, message: str
) -> None:
    tf = tmp_path / "Tiltfile"
    tf.write_text(f"# a comment\nx = 1\n{call}\n")
    with pytest.raises(UsageError) as err:
        evaluate(tf)
    assert (err.value.file, err.value.line) == (str(tf), 3)
    assert message in err.value.message
    assert str(err.value).startswith(f"{tf}:3: ")


def test_misuse_in_a_loaded_file_names_that_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "lib.star").write_text("def web():\n    k8s_resource()\n")
    tf = tmp_path / "Tiltfile"
    tf.write_text("load('lib.star', 'web')\n\nweb()\n")
    with pytest.raises(UsageError) as err:
        evaluate(tf)
    assert (err.value.file, err.value.line) == (str(tmp_path / "lib.star"), 2)


def test_an_unknown_builtin_reports_file_and_line_but_is_no_usage_error(tmp_path: Path) -> None:
    tf = tmp_path / "Tiltfile"
    tf.write_text("x = 1\nfrobnicate('web')\n")
    with pytest.raises(TiltfileError) as err:
        evaluate(tf)
    assert not isinstance(err.value, UsageError)
    assert (err.value.file, err.value.line) == (str(tf), 2)
    assert "unknown built-in or name `frobnicate`" in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("1.5h", 5400),
        ("1h30m500ms", 5400.5),
        ("0s", 0),
        ("5m0s", 300),
        ("5ms", 0.005),
    ],
)
def test_durations_follow_go_parse_duration(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "90",
        90,
        "7d",
        "1H",
        " 5m",
        "1h 30m",
        "5 m",
        ".5s",
        "1.s",
        "1..5s",
        "-5s",
        "1h-30m",
    ],
)
def test_durations_go_refuses_stay_refused(text: object) -> None:
    """Go's ``time.ParseDuration`` as Tilt uses it (no sign): a unit, lower case, no spaces."""
    with pytest.raises(UsageError, match="invalid duration"):
        duration(text)  # type: ignore[arg-type]
