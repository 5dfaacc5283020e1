"""Differences found by judging ``flotilla dev render`` against real Tilt
(``bench/dev_tilt_compare.py`` on public Tiltfiles), each in a Tiltfile of our own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flotilla.dev.plan.resources import assemble
from flotilla.dev.tiltfile.errors import TiltfileError
from tests.dev.test_patterns import by_name, rendered

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: main, image: {image}}}]}}
"""


# One image name declared with two tags (tilt/integration/imagetags): each tag is its own image,
# in the YAML and in a Dockerfile's COPY --from; before, both matched everywhere.
def test_one_name_with_two_tags_is_two_images(tmp_path: Path) -> None:
    head, objs, _ = rendered(
        tmp_path,
        "docker_build('r.io/common', 'common')\n"
        "docker_build('r.io/common:old', 'common-old')\n"
        "docker_build('r.io/app', 'app')\n"
        "docker_build('r.io/app:old', 'app-old')\n"
        "k8s_yaml(['app.yaml', 'app-old.yaml'])\n",
        **{
            "common/Dockerfile": "FROM busybox\nRUN echo new\n",
            "common-old/Dockerfile": "FROM busybox\nRUN echo old\n",
            "app/Dockerfile": "FROM busybox\nCOPY --from=r.io/common /x /x\n",
            "app-old/Dockerfile": "FROM busybox\nCOPY --from=r.io/common:old /x /x\n",
            "app.yaml": DEPLOY.format(name="app", image="r.io/app"),
            "app-old.yaml": DEPLOY.format(name="app-old", image="r.io/app:old"),
        },
    )
    res = by_name(head)
    assert [i["ref"] for i in res["app"]["images"]] == ["r.io/app"]
    assert [i["ref"] for i in res["app-old"]["images"]] == ["r.io/app:old"]
    assert res["app"]["images"][0]["image_deps"] == ["r.io/common"]
    assert res["app-old"]["images"][0]["image_deps"] == ["r.io/common:old"]
    images = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["image"] for o in objs
    }
    assert images["app"].startswith("r.io/app:tilt-") and images["app-old"].startswith(
        "r.io/app:tilt-"
    )
    assert images["app"] != images["app-old"]  # each deployment gets its own build
    # the bases are listed once, as images built only to be built from
    assert sorted(b["ref"] for b in head["base_images"]) == ["r.io/common", "r.io/common:old"]


def test_a_tagged_ref_matches_only_its_tag(tmp_path: Path) -> None:
    head, objs, _ = rendered(
        tmp_path,
        "docker_build('r.io/app:dev', '.')\nk8s_yaml('app.yaml')\n",
        **{"Dockerfile": "FROM busybox\n", "app.yaml": DEPLOY.format(name="app", image="r.io/app")},
    )
    assert "images" not in by_name(head)["app"]  # Tilt: r.io/app:dev does not match r.io/app
    assert objs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "r.io/app"


def test_an_untagged_ref_matches_any_tag(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "docker_build('r.io/app', '.')\nk8s_yaml('app.yaml')\n",
        **{
            "Dockerfile": "FROM busybox\n",
            "app.yaml": DEPLOY.format(name="app", image="r.io/app:v3"),
        },
    )
    assert [i["ref"] for i in by_name(head)["app"]["images"]] == ["r.io/app"]


# Triple-quoted scripts (tilt-extensions knative, podman): Tilt trims a string command.
def test_string_commands_are_trimmed_as_in_tilt(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "local_resource('setup', '''\n  set -e\n  echo hi\n''', serve_cmd='  sleep 9  \\n')\n"
        "custom_build('r.io/x', '''\ndocker build -t $EXPECTED_REF .\n''', ['.'])\n"
        "k8s_yaml('x.yaml')\n",
        **{"x.yaml": DEPLOY.format(name="x", image="r.io/x")},
    )
    res = by_name(head)
    assert res["setup"]["cmd"] == "set -e\n  echo hi" and res["setup"]["serve_cmd"] == "sleep 9"
    assert res["x"]["images"][0]["command"] == "docker build -t $EXPECTED_REF ."


# Tilt's third port_forwards form, HOST:LOCAL:REMOTE (a project listening on 0.0.0.0).
def test_port_forward_with_a_host(tmp_path: Path) -> None:
    head, _, result = rendered(
        tmp_path,
        "k8s_yaml('x.yaml')\n"
        "k8s_resource('x', port_forwards=['0.0.0.0:5734:5000', '8080:80', 9000])\n",
        **{"x.yaml": DEPLOY.format(name="x", image="busybox")},
    )
    assert by_name(head)["x"]["port_forwards"] == ["0.0.0.0:5734:5000", "8080:80", "9000:9000"]
    pf = next(r for r in assemble(result) if r.name == "x").port_forwards[0]
    assert (pf.host, pf.local_port, pf.container_port) == ("0.0.0.0", 5734, 5000)


@pytest.mark.parametrize("bad", ["a:1:2:3", "h st:1:2", "1:x", "x"])
def test_a_bad_port_forward_fails_on_its_line(tmp_path: Path, bad: str) -> None:
    with pytest.raises(TiltfileError, match="HOST:LOCAL:REMOTE") as err:
        rendered(
            tmp_path,
            f"k8s_yaml('x.yaml')\n\nk8s_resource('x', port_forwards=[{bad!r}])\n",
            **{"x.yaml": DEPLOY.format(name="x", image="busybox")},
        )
    assert err.value.line == 3


# A compose project in a directory named like `org+repo` or `My App`: compose normalises the
# name (lower case, only a-z 0-9 _ -), and so does Tilt; the top-level `name:` wins over it.
def test_compose_project_name_is_normalised(tmp_path: Path) -> None:
    compose = "services:\n  db:\n    image: postgres\n"
    head, _, _ = rendered(
        tmp_path / "Org+My App", "docker_compose('compose.yaml')\n", **{"compose.yaml": compose}
    )
    assert by_name(head)["db"]["compose_project"] == "orgmyapp"
    head, _, _ = rendered(
        tmp_path / "named",
        "docker_compose('compose.yaml')\n",
        **{"compose.yaml": "name: Shop_1\n" + compose},
    )
    assert by_name(head)["db"]["compose_project"] == "shop_1"
    head, _, _ = rendered(
        tmp_path / "arg",
        "docker_compose('compose.yaml', project_name='X.y')\n",
        **{"compose.yaml": compose},
    )
    assert by_name(head)["db"]["compose_project"] == "xy"


# AI-League-style: a resource_deps entry naming a resource that is commented out.
def test_an_unknown_resource_dep_is_a_warning(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "local_resource('a', 'true', resource_deps=['gone'])\n",
    )
    assert by_name(head)["a"]["resource_deps"] == []
    assert head["warnings"] == [
        "resource a specified a dependency on unknown resource gone - dependency ignored"
    ]


# An inline Dockerfile shows in the render (restart_process builds FROM the app's image).
def test_inline_dockerfile_is_rendered(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "docker_build('r.io/x', '.', dockerfile_contents='FROM busybox\\nRUN true\\n')\n"
        "k8s_yaml('x.yaml')\n",
        **{"x.yaml": DEPLOY.format(name="x", image="r.io/x")},
    )
    img = by_name(head)["x"]["images"][0]
    assert img["dockerfile"] == "<dockerfile_contents>"
    assert img["dockerfile_contents"] == "FROM busybox\nRUN true\n"


# helm_remote and git_resource walk up from their own directory to the one holding
# `tilt_modules`, where Tilt keeps extension clones: ours are laid out the same way.
def test_cloned_extensions_live_under_tilt_modules(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "finder").mkdir(parents=True)
    (repo / "finder" / "Tiltfile").write_text(
        "def find():\n"
        "    current = os.path.abspath('./')\n"
        "    for _ in range(50):\n"
        "        if os.path.exists(os.path.join(current, 'tilt_modules')):\n"
        "            return current\n"
        "        current = os.path.dirname(current)\n"
        "    fail('Could not find root Tiltfile')\n"
        "root = find()\n"
    )
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v1"], ["tag", "v1"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    _, _, result = rendered(
        tmp_path / "proj",
        f"v1alpha1.extension_repo(name='r', url='file://{repo}', ref='v1')\n"
        "v1alpha1.extension(name='finder', repo_name='r', repo_path='finder')\n"
        "load('ext://finder', 'root')\nprint(root)\n",
    )
    assert (Path(result.logs[0]) / "tilt_modules").is_dir()


# A Tiltfile indented with tabs (a list of compose files): starlark-go takes tabs as whitespace,
# starlark-rust refused them. Tabs inside strings stay.
def test_tabs_are_whitespace_outside_strings(tmp_path: Path) -> None:
    _, _, result = rendered(
        tmp_path,
        "files = [\n\t'a.yaml',\n\t'b.yaml',\n]\nif True:\n\tx = 'tab\\there'\n"
        "\ty = '''keep\n\tthis'''\nprint(len(files), x, y)\n",
    )
    assert result.logs == ["2 tab\there keep\n\tthis"]


def test_an_error_after_tabs_keeps_its_line(tmp_path: Path) -> None:
    with pytest.raises(TiltfileError) as err:
        rendered(tmp_path, "x = [\n\t1,\n]\n\nfail('here')\n")
    assert err.value.line == 5


# tilt-extensions' namespace_inject asks type(x) == 'blob', else read_yaml_stream(x); a Blob is a
# string here, so read_yaml_stream is handed the YAML of encode_yaml_stream.
def test_read_yaml_stream_of_a_blob_reads_the_blob(tmp_path: Path) -> None:
    _, _, result = rendered(
        tmp_path,
        "objs = read_yaml_stream('x.yaml')\nblob = encode_yaml_stream(objs)\n"
        "again = read_yaml_stream(blob)\nprint([o['metadata']['name'] for o in again])\n",
        **{
            "x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
        },
    )
    assert result.logs == ["['a', 'b']"]


def test_docker_build_target_is_rendered(tmp_path: Path) -> None:
    head, _, _ = rendered(
        tmp_path,
        "docker_build('r.io/x', '.', target='build')\nk8s_yaml('x.yaml')\n",
        **{
            "Dockerfile": "FROM busybox AS build\n",
            "x.yaml": DEPLOY.format(name="x", image="r.io/x"),
        },
    )
    assert by_name(head)["x"]["images"][0]["target"] == "build"


# entrypoint= and container_args= are compared with Tilt's overrideCommand/overrideArgs.
def test_entrypoint_string_and_container_args_are_rendered(tmp_path: Path) -> None:
    head, objs, _ = rendered(
        tmp_path,
        "docker_build('r.io/x', '.', entrypoint='  ./run --fast \\n', container_args=['-v'])\n"
        "k8s_yaml('x.yaml')\n",
        **{"Dockerfile": "FROM busybox\n", "x.yaml": DEPLOY.format(name="x", image="r.io/x")},
    )
    img = by_name(head)["x"]["images"][0]
    assert img["entrypoint"] == ["sh", "-c", "./run --fast"] and img["container_args"] == ["-v"]
    container = objs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c", "./run --fast"] and container["args"] == ["-v"]


# Tilt: config.parse from two directories fails (an included team file parsing on its own).
def test_config_parse_from_two_directories_fails(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "Tiltfile").write_text("cfg2 = config.parse()\n")
    (tmp_path / "shared.star").write_text("cfg3 = config.parse()\n")
    ok = "config.define_string('env')\ncfg = config.parse()\nload('shared.star', 'cfg3')\n"
    _, _, result = rendered(tmp_path, ok + "print(cfg == cfg3)\n")
    assert result.logs == ["True"]  # the same directory: allowed, one parse
    with pytest.raises(TiltfileError, match="one Tiltfile working directory per run") as err:
        rendered(tmp_path, ok + "include('team/Tiltfile')\n")
    assert "team" in str(err.value)


# tilt-extensions' namespace takes labels and annotations as 'key: value' lines; the built-in
# split on '=' (and a 'k: v' label crashed it). Tilt fails on 'k=v', so do we, with the entry.
def test_builtin_namespace_labels_are_key_colon_value(tmp_path: Path) -> None:
    _, objs, _ = rendered(
        tmp_path,
        "load('ext://namespace', 'namespace_create')\n"
        "namespace_create('ns', labels=['team: shop', 'kubernetes.io/metadata.name: ns'],"
        " annotations=['note: \"a: b\"'])\n",
    )
    meta = objs[0]["metadata"]
    assert meta["labels"] == {"team": "shop", "kubernetes.io/metadata.name": "ns"}
    assert meta["annotations"] == {"note": "a: b"}
    with pytest.raises(TiltfileError, match="labels entry 'team=shop' is not 'key: value'"):
        rendered(
            tmp_path,
            "load('ext://namespace', 'namespace_create')\n"
            "namespace_create('ns', labels=['team=shop'])\n",
        )
