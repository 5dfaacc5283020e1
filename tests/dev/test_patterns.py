"""Patterns found in public Tiltfiles (Tilt's examples and integration tests, tilt-extensions and
its tests, projects developed with Tilt), each in a Tiltfile of our own with its expected render.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flotilla.dev.plan import decide
from flotilla.dev.plan.decide import ActionKind
from flotilla.dev.plan.render import planned_refs, render
from flotilla.dev.plan.resources import assemble
from flotilla.dev.tiltfile.errors import TiltfileError
from flotilla.dev.tiltfile.evaluator import evaluate

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: main, image: {image}, command: [yaml-cmd]}}]}}
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(body)


def rendered(root: Path, tiltfile: str, **files: str) -> tuple[dict[str, Any], list[Any], Any]:
    """(resources document, manifests, evaluation result) of ``flotilla dev render``."""
    write(root, {"Tiltfile": tiltfile, **files})
    result, _ = evaluate(root / "Tiltfile")
    resources = assemble(result)
    docs = [d for d in yaml.safe_load_all(render(result, resources, planned_refs(result))) if d]
    return docs[0], docs[1:], result


def by_name(head: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in head["resources"]}


# 1. while loops (tilt-extensions/dotenv parses a file line by line)
def test_while_loop_runs_as_in_tilt(tmp_path: Path) -> None:
    _, _, result = rendered(
        tmp_path,
        "def count(n):\n    i = 0\n    while i < n:  # the body\n        i += 1\n"
        "        if i == 50:\n            break\n    return i\n"
        "s = 'while x: not a loop'\nn = 0\nwhile (n <\n       3):\n    n += 1\n"
        "print(count(5), count(99), n, s)\n",
    )
    assert result.logs == ["5 50 3 while x: not a loop"]


def test_an_error_after_a_while_loop_names_the_original_line(tmp_path: Path) -> None:
    write(tmp_path, {"Tiltfile": "i = 0\nwhile i < 2:\n    i += 1\nfail('at line 4')\n"})
    with pytest.raises(TiltfileError) as err:
        evaluate(tmp_path / "Tiltfile")
    assert err.value.line == 4


# 2. set() (cluster-api style de-duplication of provider lists)
def test_set_deduplicates_in_order(tmp_path: Path) -> None:
    _, _, result = rendered(
        tmp_path, "s = set(['b', 'a', 'b'])\nprint(s, len(s), 'a' in s, sorted(s), set())\n"
    )
    assert result.logs == ["['b', 'a'] 2 True ['a', 'b'] []"]


# 3. shlex and sys modules (43 uses of shlex.quote in tilt-extensions)
def test_shlex_and_sys(tmp_path: Path) -> None:
    _, _, result = rendered(
        tmp_path,
        "print(shlex.quote(\"it's\"), shlex.split('a \"b c\"'), shlex.join(['x', 'y z']))\n"
        "print(type(sys.argv), type(sys.executable))\n",
    )
    assert result.logs == ["'it'\"'\"'s' ['a', 'b c'] x 'y z'", "list string"]


# 4. os.unsetenv, config.main_path / main_dir, config.tilt_subcommand, __file__
def test_os_and_config_module_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_PATTERN_VAR", "1")
    write(tmp_path, {"lib/helpers.star": "where = __file__\n"})
    _, _, result = rendered(
        tmp_path,
        "load('lib/helpers.star', 'where')\nos.unsetenv('FLOTILLA_PATTERN_VAR')\n"
        "print(os.getenv('FLOTILLA_PATTERN_VAR', 'gone'), config.main_path, config.main_dir)\n"
        "print(config.tilt_subcommand, where, os.path.isdir('lib'))\n",
    )
    tf = tmp_path / "Tiltfile"
    assert result.logs == [
        f"gone {tf} {tmp_path}",
        f"up {tmp_path / 'lib' / 'helpers.star'} True",
    ]
    for sub in ("ci", "down"):
        res, _ = evaluate(tf, subcommand=sub)
        assert res.logs[1].startswith(sub + " ")


# 5. settings that mean nothing here: accepted, one warning each
def test_settings_are_accepted_and_warn_once(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "disable_snapshots()\nsecret_settings(disable_scrub=True)\n"
        "docker_prune_settings(disable=False, max_age_mins=60, num_builds=5, keep_recent=1)\n"
        "analytics_settings(False)\nanalytics_settings(enable=True)\nset_team('abc')\n"
        "enable_feature('labels')\nupdate_settings(k8s_server_side_apply='auto')\n",
    )
    assert head["warnings"] == [
        "disable_snapshots has no effect in flotilla dev (ignored)",
        "secret_settings has no effect in flotilla dev (ignored)",
        "docker_prune_settings has no effect in flotilla dev (ignored)",
        "analytics_settings has no effect in flotilla dev (ignored)",
        "set_team has no effect in flotilla dev (ignored)",
        "enable_feature('labels') has no effect in flotilla dev (ignored)",
    ]


# 6. every unresolved name, each with FILE:LINE, in one run
def test_all_unknown_names_are_reported_at_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"Tiltfile": "k8s_yaml([])\nfrobnicate()\ndef f():\n    return blorp + 1\nzorch(f)\n"},
    )
    with pytest.raises(TiltfileError) as err:
        evaluate(tmp_path / "Tiltfile")
    text = str(err.value)
    tf = tmp_path / "Tiltfile"
    assert "3 unknown built-ins or names" in text
    for name, line in (("frobnicate", 2), ("blorp", 4), ("zorch", 5)):
        assert f"{tf}:{line}: unknown built-in or name `{name}`" in text
    assert err.value.line == 2


# 7. filter_yaml (Tilt's docs; used to split helm/kustomize output)
def test_filter_yaml_splits_by_labels_name_and_kind(tmp_path: Path) -> None:
    objs = (
        DEPLOY.format(name="foo", image="foo")
        + "---\n"
        + DEPLOY.format(name="bazzoo", image="baz")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: baz-cfg, labels: {app: x}}\n"
    )
    head, manifests, _ = rendered(
        tmp_path,
        "baz, rest = filter_yaml('all.yaml', name='baz', kind='deployment')\n"
        "cfg, rest = filter_yaml(rest, labels={'app': 'x'})\n"
        "exact, none = filter_yaml(rest, name='^foo$', api_version='apps/v1')\n"
        "k8s_yaml([baz, exact])\nprint(none == '', 'ConfigMap' in cfg)\n",
        **{"all.yaml": objs},
    )
    assert [r["name"] for r in head["resources"]] == ["bazzoo", "foo"]
    assert [m["metadata"]["name"] for m in manifests] == ["bazzoo", "foo"]


# 8. read_yaml_stream (tilt-extensions/file_sync_only reads manifests)
def test_read_yaml_stream_and_its_default(tmp_path: Path) -> None:
    _, _, result = rendered(
        tmp_path,
        "docs = read_yaml_stream('two.yaml')\nprint([d['kind'] for d in docs])\n"
        "print(read_yaml_stream('missing.yaml', default=[]))\n",
        **{"two.yaml": "kind: A\n---\nkind: B\n---\n"},
    )
    assert result.logs == ["['A', 'B']", "[]"]


# 9. k8s_kind with image_json_path (CRD-based workloads)
def test_k8s_kind_makes_a_workload_and_injects_images(tmp_path: Path) -> None:
    crd = (
        "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: giz}\n"
        "spec: {runner: {image: example/giz}, other: {image: example/giz}}\n"
    )
    head, manifests, _ = rendered(
        tmp_path,
        "k8s_yaml('gizmo.yaml')\nk8s_kind('Gizmo', image_json_path='{.spec.runner.image}')\n"
        "docker_build('example/giz', '.')\n",
        **{"gizmo.yaml": crd, "Dockerfile": "FROM scratch\n"},
    )
    giz = by_name(head)["giz"]
    assert giz["kind"] == "k8s" and giz["images"][0]["ref"] == "example/giz"
    spec = manifests[0]["spec"]
    assert spec["runner"]["image"].startswith("example/giz:tilt-")
    assert spec["other"]["image"] == "example/giz"  # not at the given path


# 10. workload_to_resource_function (Tilt's docs; older linkerd2-tilt)
def test_workload_to_resource_function_names_resources(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "def name(id):\n    return id.namespace + '-' + id.name + '-' + id.kind.lower()\n"
        "k8s_yaml('a.yaml')\nworkload_to_resource_function(name)\nk8s_yaml('b.yaml')\n"
        "k8s_resource('team-b-deployment', labels=['b'])\n",
        **{
            "a.yaml": DEPLOY.format(name="a", image="x").replace(
                "{name: a}", "{name: a, namespace: team}"
            ),
            "b.yaml": DEPLOY.format(name="b", image="x").replace(
                "{name: b}", "{name: b, namespace: team}"
            ),
        },
    )
    assert [r["name"] for r in head["resources"]] == ["team-a-deployment", "team-b-deployment"]
    assert by_name(head)["team-b-deployment"]["labels"] == ["b"]


# 11. local_git_repo (tilt/integration uses it for .git ignores)
def test_local_git_repo_paths(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    _, _, result = rendered(tmp_path, "r = local_git_repo('.')\nprint(r.paths('.git/index'))\n")
    assert result.logs == [str(tmp_path / ".git" / "index")]
    write(tmp_path / "nogit", {"Tiltfile": "local_git_repo('.')\n"})
    with pytest.raises(TiltfileError, match="not a git repository") as err:
        evaluate(tmp_path / "nogit" / "Tiltfile")
    assert err.value.line == 1 and err.value.file.endswith("Tiltfile")


# 12. load_dynamic: data symbols, declarations run once
def test_load_dynamic_returns_data_and_runs_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "Tiltfile": "s = load_dynamic('lib.star')\nt = load_dynamic('lib.star')\n"
            "print(s['port'], s['names'], 'helper' in s)\n",
            "lib.star": "port = 8080\nnames = ['a']\ndef helper():\n    pass\nprint('ran')\n",
        },
    )
    result, _ = evaluate(tmp_path / "Tiltfile")
    assert result.logs == ["ran", "8080 ['a'] False"]


# 13. exit(): stops without an error, keeping what was declared
def test_exit_stops_evaluation_quietly(tmp_path: Path) -> None:
    head, _, result = rendered(
        tmp_path,
        "load('lib.star', 'x')\nlocal_resource('after', 'true')\n",
        **{"lib.star": "x = 1\nlocal_resource('before', 'true')\nexit('done early')\n"},
    )
    assert [r["name"] for r in head["resources"]] == ["before"]
    assert result.logs == ["done early"]


# 14. k8s_custom_deploy + k8s_resource on it (tilt/integration/k8s_custom_deploy, helm_resource)
def test_k8s_custom_deploy_is_a_resource(tmp_path: Path) -> None:
    head, _, result = rendered(
        tmp_path,
        "k8s_custom_deploy('web', apply_cmd='kubectl create -oyaml -f $F', "
        "delete_cmd=['kubectl', 'delete', '-f', 'd.yaml'], deps=['.'], image_selector='nginx', "
        "apply_env={'F': 'd.yaml'}, live_update=[sync('./site/', '/usr/share/nginx/html/')])\n"
        "k8s_resource('web', port_forwards=['8080:80'], labels=['front'])\n",
        **{"site/index.html": "hi\n"},
    )
    web = by_name(head)["web"]
    assert web["apply_cmd"] == "kubectl create -oyaml -f $F"
    assert web["delete_cmd"] == ["kubectl", "delete", "-f", "d.yaml"]
    assert web["port_forwards"] == ["8080:80"] and web["labels"] == ["front"]
    assert web["images"][0]["live_update"][0]["sync"]["remote_path"] == "/usr/share/nginx/html/"
    assert result.custom_deploys[0].apply_env == {"F": "d.yaml"}


# 15. images built FROM another docker_build, with ARGs and COPY --from
# (tilt/integration/live_update_base_image, tilt-extensions/restart_process)
BASE_FILES = {
    "base/Dockerfile": "FROM busybox\nRUN echo base\n",
    "content/Dockerfile": "FROM scratch\nCOPY msg /msg\n",
    "content/msg": "hello\n",
    "app/Dockerfile": (
        "ARG REPO\nARG CONTENT=content\nFROM ${REPO}/${CONTENT} AS content-image\n"
        "ARG REPO\nARG BASE\nFROM $REPO/$BASE\nCOPY --from=content-image /msg /app/msg\n"
    ),
    "app.yaml": DEPLOY.format(name="app", image="r.io/app"),
}
BASE_TILTFILE = (
    "docker_build('r.io/content', 'content')\ndocker_build('r.io/base', 'base')\n"
    "docker_build('r.io/app', 'app', build_args={'REPO': 'r.io', 'BASE': 'base'},\n"
    "             live_update=[sync('content/', '/app/')])\nk8s_yaml('app.yaml')\n"
)


def test_image_dependencies_are_found_and_tagged_from_the_base(tmp_path: Path) -> None:
    head, manifests, result = rendered(tmp_path, BASE_TILTFILE, **BASE_FILES)
    app = by_name(head)["app"]["images"][0]
    assert app["image_deps"] == ["r.io/content", "r.io/base"]
    assert "warnings" not in head  # the bases are used: no "built but unused" warning
    refs = planned_refs(result)
    (tmp_path / "base" / "Dockerfile").write_text("FROM busybox\nRUN echo changed\n")
    assert planned_refs(result)["r.io/app"] != refs["r.io/app"]  # a new base, a new app tag
    assert manifests[0]["spec"]["template"]["spec"]["containers"][0]["image"] == refs["r.io/app"]


def test_a_change_in_a_base_context_live_updates_the_dependent(tmp_path: Path) -> None:
    _, _, result = rendered(tmp_path, BASE_TILTFILE, **BASE_FILES)
    res = next(r for r in assemble(result) if r.name == "app")
    images = {i.ref: i for i in result.images}
    msg = str(tmp_path / "content" / "msg")
    action = decide.resource_action(res, images, {msg}, exists={msg}, filters={}, deployed=True)
    assert action.kind == ActionKind.LIVE_UPDATE
    assert [c.remote for c in action.copies] == ["/app/msg"]
    df = str(tmp_path / "base" / "Dockerfile")
    action = decide.resource_action(res, images, {df}, exists={df}, filters={}, deployed=True)
    assert action.kind == ActionKind.REBUILD and action.images == ["r.io/app"]


def test_images_built_from_each_other_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "Tiltfile": "docker_build('a', 'a')\ndocker_build('b', 'b')\n",
            "a/Dockerfile": "FROM b\n",
            "b/Dockerfile": "FROM a\n",
        },
    )
    with pytest.raises(TiltfileError, match="built from each other: a -> b -> a"):
        evaluate(tmp_path / "Tiltfile")


# 16. string entrypoint and the restart wrapper over the YAML's command
def test_string_entrypoint_runs_through_sh_and_restart_wins(tmp_path: Path) -> None:
    _, manifests, _ = rendered(
        tmp_path,
        "load('ext://restart_process', 'docker_build_with_restart')\n"
        "docker_build('r.io/a', 'a', entrypoint='python app.py --port 80')\n"
        "docker_build_with_restart('r.io/b', 'b', entrypoint=['/app/run'], "
        "live_update=[sync('b', '/app')])\nk8s_yaml(['a.yaml', 'b.yaml'])\n",
        **{
            "a/Dockerfile": "FROM scratch\n",
            "b/Dockerfile": "FROM scratch\n",
            "a.yaml": DEPLOY.format(name="a", image="r.io/a"),
            "b.yaml": DEPLOY.format(name="b", image="r.io/b"),
        },
    )
    a, b = (m["spec"]["template"]["spec"]["containers"][0] for m in manifests)
    assert a["command"] == ["sh", "-c", "python app.py --port 80"]  # Tilt's argv (judged)
    assert b["command"][:2] == ["/bin/sh", "-c"] and b["command"][-1] == "/app/run"


# 17. ui buttons (tilt-extensions/uibutton: v1alpha1.ui_button + v1alpha1.cmd)
def test_ui_button_and_its_command(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "v1alpha1.ui_button(name='hello', text='Say hi', location={'component_type': "
        "'Resource', 'component_id': 'web'}, inputs=[v1alpha1.ui_input_spec(name='who', "
        "text=v1alpha1.ui_text_input_spec(default_value='you'))])\n"
        "v1alpha1.cmd(name='btn-hello', args=['echo', 'hi'], env=['A=1'], "
        "start_on=v1alpha1.start_on_spec(ui_buttons=['hello']))\n"
        "v1alpha1.file_watch(name='w', watched_paths=['.'])\n",
    )
    assert head["buttons"] == [
        {
            "name": "hello",
            "text": "Say hi",
            "location": "Resource",
            "resource": "web",
            "argv": ["echo", "hi"],
            "env": ["A=1"],
        }
    ]
    assert head["warnings"] == ["v1alpha1.file_watch has no effect in flotilla dev (ignored)"]


# 18. extensions from a local directory ($FLOTILLA_DEV_EXTENSIONS), nested names (tests/golang)
# As in Tilt, os.getcwd() is the extension's directory while it loads, the caller's at call time.
EXT_HELLO = (
    "ext_dir = os.path.basename(os.getcwd())\n"
    "def hi(name):\n"
    "    print('hi ' + name + ' in ' + ext_dir + ' from ' + os.path.basename(os.getcwd()))\n"
)


def test_extensions_load_from_the_offline_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "exts",
        {
            "hello/Tiltfile": EXT_HELLO,
            "tests/golang/Tiltfile": "def test_go(name):\n    local_resource(name, 'go test')\n",
            "namespace/Tiltfile": "def namespace_yaml(n):\n    return 'real ' + n\n",
        },
    )
    monkeypatch.setenv("FLOTILLA_DEV_EXTENSIONS", str(tmp_path / "exts"))
    head, _, result = rendered(
        tmp_path / "proj",
        "load('ext://hello', 'hi')\nload('ext://tests/golang', 'test_go')\n"
        "load('ext://namespace', 'namespace_yaml')\n"
        "hi('me')\ntest_go('unit')\nprint(namespace_yaml('x'))\n",
    )
    assert result.logs == ["hi me in hello from proj", "real x"]
    assert by_name(head)["unit"]["cmd"] == "go test"


def test_restart_process_and_namespace_are_built_in_by_default(tmp_path: Path) -> None:
    _, _, result = rendered(
        tmp_path,
        "load('ext://namespace', 'namespace_yaml')\nprint(namespace_yaml('x').split()[-1])\n",
    )
    assert result.logs == ["x"]


def test_extension_names_cannot_escape_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exts").mkdir()
    monkeypatch.setenv("FLOTILLA_DEV_EXTENSIONS", str(tmp_path / "exts"))
    write(tmp_path, {"Tiltfile": "load('ext://../secret', 'x')\n"})
    with pytest.raises(TiltfileError, match="invalid extension name"):
        evaluate(tmp_path / "Tiltfile")


# 19. v1alpha1.extension_repo / extension: a file:// directory, and a git repo at a ref
def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_extension_repo_file_url_and_git_ref(tmp_path: Path) -> None:
    write(tmp_path / "repo", {"greet/Tiltfile": "msg = 'v1'\n"})
    git(tmp_path / "repo", "init", "-q")
    git(tmp_path / "repo", "add", "-A")
    git(tmp_path / "repo", "commit", "-qm", "v1")
    git(tmp_path / "repo", "tag", "v1")
    (tmp_path / "repo" / "greet" / "Tiltfile").write_text("msg = 'v2'\n")
    write(tmp_path / "plain", {"sub/dir/other/Tiltfile": "msg = 'plain'\n"})
    _, _, result = rendered(
        tmp_path / "proj",
        f"v1alpha1.extension_repo(name='pinned', url='file://{tmp_path / 'repo'}', ref='v1')\n"
        "v1alpha1.extension(name='greet', repo_name='pinned', repo_path='greet')\n"
        f"v1alpha1.extension_repo(name='local', url='file://{tmp_path / 'plain'}')\n"
        "v1alpha1.extension(name='other', repo_name='local', repo_path='sub/dir/other')\n"
        "load('ext://greet', g='msg')\nload('ext://other', o='msg')\nprint(g, o)\n",
    )
    assert result.logs == ["v1 plain"]  # the clone is at v1, not the working tree's v2


def test_an_unreachable_extension_repo_fails_with_advice(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "Tiltfile": "v1alpha1.extension_repo(name='default', url='file:///nonexistent')\n"
            "load('ext://x', 'y')\n"
        },
    )
    with pytest.raises(TiltfileError, match="ext://x: extension repository file:///nonexistent"):
        evaluate(tmp_path / "Tiltfile")


# 20. fail() inside an extension names the extension's file and line
def test_errors_inside_an_extension_name_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "exts", {"bad/Tiltfile": "x = 1\nfail('not here')\n"})
    monkeypatch.setenv("FLOTILLA_DEV_EXTENSIONS", str(tmp_path / "exts"))
    write(tmp_path, {"Tiltfile": "load('ext://bad', 'x')\n"})
    with pytest.raises(TiltfileError, match="fail: not here") as err:
        evaluate(tmp_path / "Tiltfile")
    assert err.value.file == str(tmp_path / "exts" / "bad" / "Tiltfile")
    assert err.value.line == 2
