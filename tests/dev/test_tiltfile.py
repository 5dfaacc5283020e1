"""Tiltfile evaluation: Tilt's built-ins, their defaults, and errors that name the line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flotilla.dev.plan.model import FallBackOn, Run, Sync, TriggerMode
from flotilla.dev.tiltfile.errors import TiltfileError
from flotilla.dev.tiltfile.evaluator import evaluate
from tests.core.test_yamlload import bomb

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: example/web}]}
"""


def tilt(tmp_path: Path, text: str, **files: str) -> Path:
    for name, body in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(body)
    tf = tmp_path / "Tiltfile"
    tf.write_text(text)
    return tf


def test_docker_build_defaults_and_live_update(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        """
docker_build('example/web', '.', live_update=[
    fall_back_on('requirements.txt'),
    sync('./src', '/app/src'),
    run('pip install -r requirements.txt', trigger=['requirements.txt']),
])
k8s_yaml('deploy.yaml')
""",
        **{"Dockerfile": "FROM scratch\n", "deploy.yaml": DEPLOY, "src/a.py": ""},
    )
    result, _ = evaluate(tf)
    (image,) = result.images
    assert image.dockerfile == str(tmp_path / "Dockerfile")
    assert image.context == str(tmp_path)
    assert image.build_args == {} and image.only == () and image.entrypoint == ()
    assert image.live_update == (
        FallBackOn((str(tmp_path / "requirements.txt"),)),
        Sync(str(tmp_path / "src"), "/app/src"),
        Run("pip install -r requirements.txt", (str(tmp_path / "requirements.txt"),)),
    )
    assert result.k8s_objects[0]["metadata"]["name"] == "web"
    assert str(tmp_path / "deploy.yaml") in result.watched_files


def test_live_update_order_is_checked(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        "docker_build('a', '.', live_update=[\n  run('x'),\n  sync('.', '/a')])\n",
        Dockerfile="FROM scratch\n",
    )
    with pytest.raises(TiltfileError, match="ordered") as err:
        evaluate(tf)
    assert err.value.line == 1


def test_unknown_builtin_names_it_and_the_line(tmp_path: Path) -> None:
    tf = tilt(tmp_path, "k8s_yaml([])\n\nx = 1\nsecret_settingz(disable_scrub=True)\n")
    with pytest.raises(TiltfileError) as err:
        evaluate(tf)
    assert err.value.line == 4
    assert "secret_settingz" in str(err.value)
    assert str(err.value).startswith(f"{tf}:4:")


def test_error_inside_a_function_points_at_the_failing_call(tmp_path: Path) -> None:
    tf = tilt(tmp_path, "def svc(n):\n    k8s_yaml(n + '.yaml')\n\nsvc('missing')\n")
    with pytest.raises(TiltfileError, match="cannot read") as err:
        evaluate(tf)
    assert err.value.line == 2


def test_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    tf = tilt(tmp_path, "include('./sub/Tiltfile')\n", **{"sub/Tiltfile": "\nfail('nope')\n"})
    with pytest.raises(TiltfileError, match="nope") as err:
        evaluate(tf)
    assert err.value.file == str(tmp_path / "sub" / "Tiltfile")
    assert err.value.line == 2


def test_bad_argument_name_is_reported(tmp_path: Path) -> None:
    tf = tilt(tmp_path, "k8s_resource('web', port_forward=8000)\n")
    with pytest.raises(TiltfileError, match="port_forward"):
        evaluate(tf)


def test_syntax_error_has_a_line(tmp_path: Path) -> None:
    tf = tilt(tmp_path, "x = 1\ny = )\n")
    with pytest.raises(TiltfileError, match="Parse error") as err:
        evaluate(tf)
    assert err.value.line == 2


def test_load_and_include_resolve_relative_to_their_file(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        """
load('./lib/helpers.star', 'service', VERSION='version')
include('./svc/Tiltfile')
service('api')
print(VERSION)
""",
        **{
            "lib/helpers.star": "version = '1.2'\ndef service(name):\n"
            "    local_resource(name, 'true', deps=['data'])\n",
            "svc/Tiltfile": "local_resource('svc', 'true', deps=['.'])\n",
        },
    )
    result, _ = evaluate(tf)
    names = {lr.name: lr for lr in result.local_resources}
    assert names["svc"].deps == (str(tmp_path / "svc"),)
    assert names["api"].deps == (str(tmp_path / "data"),)  # called from the Tiltfile
    assert "1.2" in result.logs
    assert str(tmp_path / "lib" / "helpers.star") in result.loaded_files


def test_builtin_extensions(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        """
load('ext://restart_process', 'docker_build_with_restart')
load('ext://namespace', 'namespace_create', 'namespace_inject')
namespace_create('dev', labels=['team: a'])  # the extension's 'key: value' form
docker_build_with_restart('example/web', '.', entrypoint='python app.py',
                          live_update=[sync('.', '/app')])
k8s_yaml(namespace_inject(read_file('deploy.yaml'), 'dev'))
""",
        **{"Dockerfile": "FROM scratch\n", "deploy.yaml": DEPLOY},
    )
    result, _ = evaluate(tf)
    assert result.images[0].restart_entrypoint == ("sh", "-c", "python app.py")
    ns, web = result.k8s_objects
    assert ns["kind"] == "Namespace" and ns["metadata"]["labels"] == {"team": "a"}
    assert web["metadata"]["namespace"] == "dev"


def test_unknown_extension_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exts").mkdir()
    monkeypatch.setenv("FLOTILLA_DEV_EXTENSIONS", str(tmp_path / "exts"))
    tf = tilt(tmp_path, "load('ext://helm_resource', 'helm_resource')\n")
    with pytest.raises(TiltfileError, match=r"ext://helm_resource: .*no helm_resource/Tiltfile"):
        evaluate(tf)


def test_config_flags_from_args_and_tilt_config_json(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        """
config.define_string_list('to-run', args=True)
config.define_string('env')
config.define_bool('debug')
cfg = config.parse()
local_resource('a', 'echo %s %s %s' % (cfg.get('to-run', []), cfg.get('env', 'dev'),
                                         cfg.get('debug', False)))
""",
        **{"tilt_config.json": json.dumps({"env": "staging"})},
    )
    result, _ = evaluate(tf, args=["api", "web", "--debug"])
    assert result.local_resources[0].cmd == 'echo ["api", "web"] staging True'
    with pytest.raises(TiltfileError, match="unknown flag --nope"):
        evaluate(tf, args=["--nope", "x"])


def test_os_and_file_builtins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_TEST_VALUE", "from-env")
    tf = tilt(
        tmp_path,
        """
v = os.getenv('FLOTILLA_TEST_VALUE', 'unset')
missing = os.getenv('FLOTILLA_TEST_MISSING', 'default')
here = os.path.exists('data/a.json')
data = read_json('data/a.json')
ys = decode_yaml_stream(read_file('data/s.yaml'))
y = read_yaml('data/none.yaml', default={'fallback': True})
files = listdir('data')
out = str(local('echo hi', quiet=True)).strip()
watch_file('extra.txt')
k8s_yaml(blob(encode_yaml_stream([{'apiVersion': 'v1', 'kind': 'ConfigMap',
                                  'metadata': {'name': 'c'}, 'data': {'v': v}}])))
print(v, missing, here, data['n'], len(ys), y['fallback'], len(files), out)
warn('careful')
version_settings(constraint='>=0.30')
update_settings(max_parallel_updates=2)
""",
        **{"data/a.json": '{"n": 3}', "data/s.yaml": "a: 1\n---\nb: 2\n"},
    )
    result, _ = evaluate(tf)
    assert result.logs[-1] == "from-env default True 3 2 True 2 hi"
    assert result.k8s_objects[0]["data"] == {"v": "from-env"}
    assert result.warnings == ["careful"]
    assert result.settings.max_parallel_updates == 2
    assert str(tmp_path / "extra.txt") in result.watched_files


def test_local_failure_reports_command_and_output(tmp_path: Path) -> None:
    tf = tilt(tmp_path, "x = 1\nlocal('echo broken >&2; exit 3')\n")
    with pytest.raises(TiltfileError, match="exited 3: broken") as err:
        evaluate(tf)
    assert err.value.line == 2


def test_local_resource_arguments(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        """
local_resource('compile', cmd=['go', 'build'], deps=['src'], ignore=['src/*.tmp'],
               resource_deps=[], trigger_mode=TRIGGER_MODE_MANUAL, auto_init=False,
               serve_cmd='./server', env={'A': '1'}, serve_env={'B': '2'}, dir='src',
               labels=['backend'], links=['http://x'],
               readiness_probe=probe(period_secs=1, http_get=http_get_action(port=8080)))
""",
    )
    result, _ = evaluate(tf)
    (lr,) = result.local_resources
    assert lr.cmd == ("go", "build") and lr.trigger_mode == TriggerMode.MANUAL
    assert lr.dir == str(tmp_path / "src") and lr.auto_init is False
    assert lr.readiness_probe is not None and lr.readiness_probe.port == 8080
    assert lr.readiness_probe.period_secs == 1.0 and lr.links[0].url == "http://x"


def test_custom_build_and_registry(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        """
default_registry('127.0.0.1:5000', host_from_cluster='registry:5000')
custom_build('example/web', 'docker build -t $EXPECTED_REF .', ['.'], disable_push=True)
allow_k8s_contexts(['kind-kind', k8s_context()])
""",
    )
    result, _ = evaluate(tf, kube_context="dev")
    assert result.images[0].kind == "custom" and result.images[0].disable_push
    assert result.settings.default_registry == "127.0.0.1:5000"
    assert result.settings.registry_from_cluster == "registry:5000"
    assert result.settings.allowed_contexts == ("kind-kind", "dev")


def test_kustomize_renders_with_kubectl(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        "k8s_yaml(kustomize('k'))\n",
        **{
            "k/kustomization.yaml": "resources: [deploy.yaml]\nnamePrefix: dev-\n",
            "k/deploy.yaml": DEPLOY,
        },
    )
    result, _ = evaluate(tf)
    assert result.k8s_objects[0]["metadata"]["name"] == "dev-web"


@pytest.fixture
def helm_on_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """helm from $PATH or the cache, else built once by the charts suite's own helper."""
    import importlib.util

    from flotilla.dev.tiltfile.tools import ToolNotFoundError, find_tool

    try:
        find_tool("helm")
    except ToolNotFoundError:
        path = Path(__file__).resolve().parents[1] / "charts" / "helm_build.py"
        spec = importlib.util.spec_from_file_location("charts_helm_build", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setenv("FLOTILLA_HELM", str(module.ensure_helm()))


@pytest.mark.usefixtures("helm_on_hand")
def test_helm_renders_a_chart(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        "k8s_yaml(helm('chart', name='rel', set=['replicas=2']))\n",
        **{
            "chart/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            "chart/values.yaml": "replicas: 1\n",
            "chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: '{{ .Release.Name }}-cfg'}\n"
            "data: {replicas: '{{ .Values.replicas }}'}\n",
        },
    )
    result, _ = evaluate(tf)
    cm = result.k8s_objects[0]
    assert cm["metadata"]["name"] == "rel-cfg" and cm["data"] == {"replicas": "2"}


def test_duplicate_objects_need_allow_duplicates(tmp_path: Path) -> None:
    tf = tilt(tmp_path, "k8s_yaml('d.yaml')\nk8s_yaml('d.yaml')\n", **{"d.yaml": DEPLOY})
    with pytest.raises(TiltfileError, match="duplicate YAML object web:deployment") as err:
        evaluate(tf)
    assert err.value.line == 2


def test_compose_services(tmp_path: Path) -> None:
    tf = tilt(
        tmp_path,
        "docker_compose('compose.yaml')\ndc_resource('web', labels=['fe'])\n",
        **{
            "compose.yaml": "services:\n  web: {image: nginx, ports: ['8080:80']}\n"
            "  db: {image: postgres}\n"
        },
    )
    result, _ = evaluate(tf)
    assert set(result.compose[0].services) == {"web", "db"}
    assert result.compose[0].project_name == tmp_path.name
    assert result.dc_resources[0].labels == ("fe",)


@pytest.mark.parametrize(
    "call",
    [
        "read_yaml('bomb.yaml')",
        "decode_yaml(read_file('bomb.yaml'))",
        "decode_yaml_stream(read_file('bomb.yaml'))",
        "k8s_yaml('bomb.yaml')",
        "docker_compose('bomb.yaml')",
    ],
)
def test_a_yaml_alias_bomb_is_an_error_on_its_line_not_a_hang(tmp_path: Path, call: str) -> None:
    tf = tilt(tmp_path, f"x = 1\n{call}\n", **{"bomb.yaml": bomb(9)})
    start = time.monotonic()
    with pytest.raises(TiltfileError, match="alias bomb") as err:
        evaluate(tf)
    assert time.monotonic() - start < 5
    assert err.value.line == 2


@pytest.mark.usefixtures("helm_on_hand")
def test_helm_namespace_is_set_on_each_namespaced_object(tmp_path: Path) -> None:
    """``helm template --namespace`` leaves objects without one; Tilt sets it (so do we)."""
    tf = tilt(
        tmp_path,
        "k8s_yaml(helm('chart', name='rel', namespace='team'))\n",
        **{
            "chart/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            "chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n",
            "chart/templates/other.yaml": "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: kept, namespace: elsewhere}\n",
            "chart/templates/role.yaml": "apiVersion: rbac.authorization.k8s.io/v1\n"
            "kind: ClusterRole\nmetadata: {name: reader}\n",
        },
    )
    result, _ = evaluate(tf)
    ns = {o["metadata"]["name"]: o["metadata"].get("namespace") for o in result.k8s_objects}
    assert ns == {"cfg": "team", "kept": "elsewhere", "reader": None}
