"""Loading inputs: line marks, bundles, lists, bad and hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla.operators.loading import (
    InputError,
    line_of,
    load_bundle,
    load_inputs,
    load_yaml_documents,
)
from tests.operators.helpers import BUNDLES


def test_mappings_remember_their_start_line() -> None:
    docs = load_yaml_documents("a: 1\n---\nkind: X\nrules:\n- verbs: [get]\n  x: 1\n", "f")
    assert [line_of(d) for d in docs] == [1, 3]
    assert line_of(docs[1]["rules"][0]) == 5
    assert line_of("not a mapping", 7) == 7


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    manifests, errors = load_inputs([bad])
    assert manifests == [] and len(errors) == 1 and "bad.yaml" in str(errors[0])


def test_missing_path_and_non_objects(tmp_path: Path) -> None:
    (tmp_path / "junk.yaml").write_text("- 1\n- 2\n---\njust a string\n---\nkind: NoApiVersion\n")
    (tmp_path / "list.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n"
        "  metadata: {name: a}\n"
    )
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.yaml").write_text("apiVersion: v1\nkind: Secret\n")
    manifests, errors = load_inputs([tmp_path, tmp_path / "nope"])
    assert [(m.kind, m.name, m.source.line) for m in manifests] == [("ConfigMap", "a", 4)]
    assert [str(e) for e in errors] == [f"{tmp_path / 'nope'}: no such file or directory"]


def test_bundle_annotations_and_csv() -> None:
    bundle = load_bundle(BUNDLES / "etcd-0.9.2")
    assert bundle.package == "etcd"
    assert bundle.csv is not None and bundle.csv.name == "etcdoperator.v0.9.2"
    assert {m.kind for m in bundle.manifests} == {
        "ClusterServiceVersion",
        "CustomResourceDefinition",
    }


def test_bundle_manifests_dir_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "b" / "manifests").mkdir(parents=True)
    (tmp_path / "b" / "metadata").mkdir()
    (tmp_path / "b" / "metadata" / "annotations.yaml").write_text(
        "annotations:\n  operators.operatorframework.io.bundle.manifests.v1: ../../etc/\n"
    )
    with pytest.raises(InputError, match="escapes the bundle"):
        load_bundle(tmp_path / "b")


def test_directory_of_bundles_loads_each_as_a_bundle() -> None:
    manifests, errors = load_inputs([BUNDLES])
    assert errors == []
    csvs = sorted(m.name for m in manifests if m.kind == "ClusterServiceVersion")
    assert csvs == [
        "etcdoperator.v0.9.0",
        "etcdoperator.v0.9.1",
        "etcdoperator.v0.9.2",
        "etcdoperator.v0.9.4",
        "greedy-operator.v1.0.0",
        "memcached-operator.v0.0.1",
    ]
    assert not any(m.kind == "" for m in manifests)


def test_yaml_bombs_are_refused_by_the_safe_loader(tmp_path: Path) -> None:
    f = tmp_path / "tag.yaml"
    f.write_text("apiVersion: v1\nkind: !!python/object/apply:os.system ['true']\n")
    _, errors = load_inputs([f])
    assert errors and "not valid YAML" in str(errors[0])
