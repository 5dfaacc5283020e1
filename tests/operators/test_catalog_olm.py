"""File-based catalogs as OLM reads them: inline bundle objects, deprecations, dependencies.

Each case follows a shape found in real catalogs (community-operators-prod ``catalogs/v4.*``,
operator-registry's declcfg test data); the documents are written here, not copied.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from flotilla.operators.audit import audit
from flotilla.operators.catalog import (
    GVK,
    GraphError,
    is_image_reference,
    load_catalog,
    parse_catalog,
)
from flotilla.operators.dependencies import resolve_dependencies
from flotilla.operators.lifecycle import LifecycleError, open_bundle, plan_install
from flotilla.operators.semver import Version


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def csv(name: str, modes: dict[str, bool] | None = None, rules: list[Any] | None = None) -> Any:
    modes = modes or {"OwnNamespace": True, "AllNamespaces": True}
    return {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {"name": name},
        "spec": {
            "installModes": [{"type": t, "supported": s} for t, s in modes.items()],
            "install": {
                "strategy": "deployment",
                "spec": {
                    "clusterPermissions": [
                        {
                            "serviceAccountName": "op",
                            "rules": rules
                            or [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
                        }
                    ],
                    "deployments": [{"name": "op", "spec": {"template": {"spec": {}}}}],
                },
            },
        },
    }


def bundle_doc(
    package: str,
    version: str,
    *,
    objects: list[Any] | None = None,
    image: str = "",
    provides: list[GVK] | None = None,
    requires: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    props: list[dict[str, Any]] = [
        {"type": "olm.package", "value": {"packageName": package, "version": version}}
    ]
    props += [{"type": "olm.bundle.object", "value": {"data": b64(o)}} for o in objects or []]
    props += [
        {"type": "olm.gvk", "value": {"group": g.group, "version": g.version, "kind": g.kind}}
        for g in provides or []
    ]
    props += requires or []
    doc: dict[str, Any] = {
        "schema": "olm.bundle",
        "name": f"{package}.v{version}",
        "package": package,
        "properties": props,
    }
    if image:
        doc["image"] = image
    return doc


def package_docs(package: str, versions: list[str], channel: str = "stable") -> list[Any]:
    entries: list[dict[str, Any]] = []
    for i, ver in enumerate(versions):
        entry: dict[str, Any] = {"name": f"{package}.v{ver}"}
        if i:
            entry["replaces"] = f"{package}.v{versions[i - 1]}"
        entries.append(entry)
    return [
        {"schema": "olm.package", "name": package, "defaultChannel": channel},
        {"schema": "olm.channel", "package": package, "name": channel, "entries": entries},
    ]


CERTS = GVK("cert-manager.io", "v1", "Certificate")


def test_image_references_are_told_from_paths() -> None:
    for image in (
        "quay.io/org/bundle@sha256:" + "a" * 64,
        "registry.example.com:5000/b:v1",
        "localhost:5000/b:v1",
        "127.0.0.1:40000/bundles/etcd:v0.9.2",
    ):
        assert is_image_reference(image), image
    for path in ("bundles/etcd-0.9.2", "etcd.v0.9.2", "../../etc", "./x.y/z", "file://b/c"):
        assert not is_image_reference(path), path


def test_inline_bundle_objects_are_the_bundle(tmp_path: Path) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "names": {"plural": "things", "kind": "Thing"}},
    }
    docs = [
        *package_docs("p", ["1.0.0"]),
        bundle_doc(
            "p", "1.0.0", objects=[crd, csv("p.v1.0.0")], image="quay.io/nowhere/p-bundle:v1"
        ),
    ]
    cat = parse_catalog(docs, tmp_path, ["catalog.yaml"] * len(docs))
    ref = cat.package("p").bundle("p.v1.0.0")
    assert ref.image == "quay.io/nowhere/p-bundle:v1" and len(ref.objects) == 2
    # OLM installs from the objects without pulling the image: no registry is contacted here
    bundle = open_bundle(ref)
    assert [m.kind for m in bundle.manifests] == [
        "CustomResourceDefinition",
        "ClusterServiceVersion",
    ]
    assert bundle.package == "p"
    report = audit(bundle.manifests, namespace="ops")
    secrets = [f for f in report.findings if f.rule == "secrets-read"]
    assert secrets and str(secrets[0].source) == "catalog.yaml"  # the bundle entry, no line here


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"data": "not base64!"}, "is not base64"),
        ({"data": base64.b64encode(b"{oops").decode()}, "is not a JSON manifest"),
        ({"data": b64({"kind": "Role"})}, "is not a Kubernetes object"),
        ({}, "has no data"),
        ("text", "has no data"),
    ],
)
def test_bad_bundle_object_leaves_out_that_bundle_naming_file_and_entry(
    tmp_path: Path, value: Any, why: str
) -> None:
    (tmp_path / "catalog.yaml").write_text(
        "schema: olm.package\nname: p\ndefaultChannel: stable\n---\n"
        "schema: olm.channel\nname: stable\npackage: p\n"
        "entries: [{name: p.v1.0.0}, {name: p.v2.0.0, replaces: p.v1.0.0}]\n"
        "---\n" + json.dumps(bundle_doc("p", "1.0.0", objects=[csv("p.v1.0.0")])) + "\n---\n"
        "schema: olm.bundle\nname: p.v2.0.0\npackage: p\nproperties:\n"
        "- {type: olm.package, value: {packageName: p, version: 2.0.0}}\n"
        f"- {{type: olm.bundle.object, value: {json.dumps(value)}}}\n"
    )
    cat = load_catalog(tmp_path)
    assert sorted(cat.package("p").bundles) == ["p.v1.0.0"]
    assert len(cat.problems) == 1
    problem = cat.problems[0]
    assert problem.startswith(f"{tmp_path / 'catalog.yaml'}:12: olm.bundle p.v2.0.0 left out")
    assert f"property 1 (olm.bundle.object) {why}" in problem


def test_bundle_without_objects_image_or_directory_is_named(tmp_path: Path) -> None:
    docs = [*package_docs("p", ["1.0.0"]), bundle_doc("p", "1.0.0")]
    cat = parse_catalog(docs, tmp_path, ["c.yaml"] * len(docs))
    with pytest.raises(
        LifecycleError, match=r"bundle p\.v1\.0\.0 \(c\.yaml\): no bundle directory"
    ):
        open_bundle(cat.package("p").bundle("p.v1.0.0"))


def test_deprecations_of_package_channel_and_bundle(tmp_path: Path) -> None:
    docs = [
        *package_docs("p", ["1.0.0", "2.0.0"], channel="alpha"),
        bundle_doc("p", "1.0.0", objects=[csv("p.v1.0.0")]),
        bundle_doc("p", "2.0.0", objects=[csv("p.v2.0.0")]),
        {
            "schema": "olm.deprecations",
            "package": "p",
            "entries": [
                {"reference": {"schema": "olm.package"}, "message": "use q instead\n"},
                {"reference": {"schema": "olm.channel", "name": "alpha"}, "message": "use stable"},
                {"reference": {"schema": "olm.bundle", "name": "p.v2.0.0"}, "message": "CVE-1"},
                {"reference": {"schema": "olm.bundle", "name": "p.v9.0.0"}, "message": "gone"},
                {"reference": {"schema": "olm.channel"}, "message": "no name"},
                {"reference": {"schema": "olm.bogus", "name": "x"}, "message": "?"},
            ],
        },
    ]
    cat = parse_catalog(docs, tmp_path, ["c.yaml"] * len(docs))
    plan = plan_install(cat, "p", channel=None, namespace="p-system")
    assert plan.state.deprecations == [
        "package p is deprecated: use q instead",
        "channel p/alpha is deprecated: use stable",
        "bundle p.v2.0.0 is deprecated: CVE-1",
    ]
    assert cat.problems == [
        "c.yaml: olm.deprecations of p: entry 4 references olm.channel without a name",
        "c.yaml: olm.deprecations of p: entry 5 has an unknown reference schema 'olm.bogus'",
        "c.yaml: olm.deprecations of p: no bundle p.v9.0.0",
    ]
    bad = parse_catalog([{"schema": "olm.deprecations", "package": "p", "entries": []}], tmp_path)
    assert bad.problems == [
        f"{tmp_path}: olm.deprecations of p left out: entries must be a non-empty list"
    ]


def _dependency_catalog(tmp_path: Path) -> Any:
    docs = [
        *package_docs("app", ["1.0.0"]),
        bundle_doc(
            "app",
            "1.0.0",
            objects=[csv("app.v1.0.0")],
            requires=[
                {
                    "type": "olm.gvk.required",
                    "value": {"group": CERTS.group, "kind": CERTS.kind, "version": "v1"},
                },
                {
                    "type": "olm.package.required",
                    "value": {"packageName": "db", "versionRange": ">=2.0.0 <3.0.0"},
                },
            ],
        ),
        *package_docs("certs", ["1.13.0", "1.14.0"]),
        bundle_doc("certs", "1.13.0", objects=[csv("certs.v1.13.0")], provides=[CERTS]),
        bundle_doc("certs", "1.14.0", objects=[csv("certs.v1.14.0")], provides=[CERTS]),
        *package_docs("db", ["1.9.0", "2.1.0", "3.0.0"]),
        *[bundle_doc("db", v, objects=[csv(f"db.v{v}")]) for v in ("1.9.0", "2.1.0", "3.0.0")],
    ]
    return parse_catalog(docs, tmp_path, ["deps.yaml"] * len(docs))


def test_dependencies_resolve_to_bundles_in_range(tmp_path: Path) -> None:
    cat = _dependency_catalog(tmp_path)
    app = cat.package("app").bundle("app.v1.0.0")
    deps = resolve_dependencies(cat, app)
    # the API: the head of the provider's default channel; the package: newest in range
    assert [(d.package, d.bundle.name if d.bundle else d.installed) for d in deps] == [
        ("db", "db.v2.1.0"),
        ("certs", "certs.v1.14.0"),
    ]
    assert str(deps[0]) == (
        "app.v1.0.0 requires package db >=2.0.0 <3.0.0: needs db.v2.1.0 (package db)"
    )
    plan = plan_install(cat, "app", channel=None, namespace="app")
    assert [d.package for d in plan.missing] == ["db", "certs"]


def test_installed_operators_meet_requirements_first(tmp_path: Path) -> None:
    cat = _dependency_catalog(tmp_path)
    app = cat.package("app").bundle("app.v1.0.0")
    installed = {
        "certs": ("certs.v1.13.0", Version.parse("1.13.0")),
        "db": ("db.v2.0.5", Version.parse("2.0.5")),
    }
    deps = resolve_dependencies(cat, app, installed)
    assert all(d.bundle is None for d in deps)
    assert [d.installed for d in deps] == ["db.v2.0.5", "certs.v1.13.0"]
    assert plan_install(cat, "app", channel=None, namespace="a", installed=installed).missing == []


def test_unmet_requirement_names_bundle_entry_and_requirement(tmp_path: Path) -> None:
    cat = _dependency_catalog(tmp_path)
    del cat.packages["certs"]
    with pytest.raises(GraphError) as err:
        resolve_dependencies(cat, cat.package("app").bundle("app.v1.0.0"))
    assert str(err.value).startswith("deps.yaml: bundle app.v1.0.0 requires API cert-manager.io/v1")
    assert "no bundle in the catalog and no installed operator provides" in str(err.value)
    installed_too_old = {"db": ("db.v1.9.0", Version.parse("1.9.0"))}
    cat = _dependency_catalog(tmp_path)
    deps = resolve_dependencies(cat, cat.package("app").bundle("app.v1.0.0"), installed_too_old)
    assert deps[0].bundle is not None and deps[0].bundle.name == "db.v2.1.0"


def test_bad_requirement_property_leaves_the_bundle_out(tmp_path: Path) -> None:
    docs = [
        *package_docs("p", ["1.0.0"]),
        bundle_doc(
            "p",
            "1.0.0",
            objects=[csv("p.v1.0.0")],
            requires=[
                {
                    "type": "olm.package.required",
                    "value": {"packageName": "q", "versionRange": "~1.2"},
                }
            ],
        ),
    ]
    cat = parse_catalog(docs, tmp_path, ["c.yaml"] * len(docs))
    assert cat.package("p").bundles == {}
    assert cat.problems[0].startswith(
        "c.yaml: olm.bundle p.v1.0.0 left out: property 2 (olm.package.required)"
    )


def test_transitive_dependencies_come_first_and_cycles_end(tmp_path: Path) -> None:
    req = {"type": "olm.package.required"}
    docs = [
        *package_docs("a", ["1.0.0"]),
        bundle_doc(
            "a",
            "1.0.0",
            objects=[csv("a")],
            requires=[{**req, "value": {"packageName": "b", "versionRange": ">=1.0.0"}}],
        ),
        *package_docs("b", ["1.0.0"]),
        bundle_doc(
            "b",
            "1.0.0",
            objects=[csv("b")],
            requires=[{**req, "value": {"packageName": "c", "versionRange": ">=1.0.0"}}],
        ),
        *package_docs("c", ["1.0.0"]),
        bundle_doc(
            "c",
            "1.0.0",
            objects=[csv("c")],
            requires=[{**req, "value": {"packageName": "a", "versionRange": ">=1.0.0"}}],
        ),
    ]
    cat = parse_catalog(docs, tmp_path)
    deps = resolve_dependencies(cat, cat.package("a").bundle("a.v1.0.0"))
    assert [d.package for d in deps] == ["c", "b"]


def test_a_required_package_in_range_also_provides_the_required_api(tmp_path: Path) -> None:
    """As operator-registry's foo/bar test catalog: an API and a package range that one old
    bar meets; the head of bar provides the API but is out of range."""
    bar = GVK("test.bar", "v1alpha1", "Bar")
    docs = [
        *package_docs("foo", ["0.3.0"]),
        bundle_doc(
            "foo",
            "0.3.0",
            objects=[csv("foo")],
            requires=[
                {
                    "type": "olm.gvk.required",
                    "value": {"group": "test.bar", "kind": "Bar", "version": "v1alpha1"},
                },
                {
                    "type": "olm.package.required",
                    "value": {"packageName": "bar", "versionRange": "<0.2.0"},
                },
            ],
        ),
        *package_docs("bar", ["0.1.0", "1.0.0"]),
        bundle_doc("bar", "0.1.0", objects=[csv("bar")], provides=[bar]),
        bundle_doc("bar", "1.0.0", objects=[csv("bar")], provides=[bar]),
    ]
    cat = parse_catalog(docs, tmp_path)
    deps = resolve_dependencies(cat, cat.package("foo").bundle("foo.v0.3.0"))
    assert [(d.package, d.bundle.name if d.bundle else "") for d in deps] == [("bar", "bar.v0.1.0")]
