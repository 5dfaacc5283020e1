"""Dependency resolution over a catalog: which installed operator or catalog bundle meets each
requirement (``olm.package.required``, ``olm.gvk.required``) of a bundle, as OLM resolves them."""

from __future__ import annotations

from dataclasses import dataclass

from flotilla.operators.catalog import (
    GVK,
    BundleRef,
    Catalog,
    GraphError,
    Package,
    Requirement,
)
from flotilla.operators.semver import Version


@dataclass(frozen=True)
class Dependency:
    """How one requirement of a bundle is met: by an installed operator, or a bundle to install."""

    required_by: str
    requirement: Requirement
    package: str
    bundle: BundleRef | None = None
    """None when ``installed`` already meets it."""
    installed: str = ""

    def __str__(self) -> str:
        how = (
            f"met by installed {self.package} {self.installed}"
            if self.bundle is None
            else f"needs {self.bundle.name} (package {self.package})"
        )
        return f"{self.required_by} requires {self.requirement}: {how}"


def _default_head(pkg: Package) -> BundleRef | None:
    try:
        return pkg.head()
    except GraphError:
        return None


def _in_range(req: Requirement, version: Version) -> bool:
    return req.version_range is None or version in req.version_range


def _candidates(pkg: Package, req: Requirement) -> list[BundleRef]:
    """Bundles of ``pkg`` meeting ``req``, best first: the default channel's head, then the
    newest of the default channel, then the newest of any channel (OLM prefers the default
    channel and, within it, the head)."""
    default = pkg.channels.get(pkg.default_channel)
    in_default = {e.name for e in default.entries} if default else set()
    head = _default_head(pkg)

    def rank(b: BundleRef) -> tuple[bool, bool, Version]:
        return (head is not None and b.name == head.name, b.name in in_default, b.version)

    listed = {e.name for ch in pkg.channels.values() for e in ch.entries}
    found = [b for b in pkg.bundles.values() if b.name in listed and _in_range(req, b.version)]
    if req.gvk is not None:
        found = [b for b in found if req.gvk in b.provides]
    return sorted(found, key=rank, reverse=True)


def resolve_dependencies(
    catalog: Catalog,
    bundle: BundleRef,
    installed: dict[str, tuple[str, Version]] | None = None,
) -> list[Dependency]:
    """Every requirement of ``bundle`` and of what it pulls in, met once each, as OLM resolves.

    ``installed`` maps package -> (bundle name, version) of what runs now: an installed operator
    in range (or providing the API) meets a requirement before any catalog bundle. A requirement
    nothing meets is a :class:`GraphError` naming the bundle, the requirement and its entry.
    Returned in install order: a dependency comes before what requires it.
    """
    have = dict(installed or {})
    order: list[Dependency] = []
    chosen: dict[str, BundleRef] = {bundle.package: bundle}

    def provided_by_installed(gvk: GVK) -> tuple[str, str] | None:
        for package, (name, _version) in sorted(have.items()):
            ref = catalog.packages.get(package, Package(package)).bundles.get(name)
            if ref is not None and gvk in ref.provides:
                return package, name
        for package, ref in chosen.items():
            if gvk in ref.provides:
                return package, ref.name
        return None

    def visit(ref: BundleRef, trail: tuple[str, ...]) -> None:
        # package requirements first: they pin a version range, and an API is then looked for
        # among what is already chosen (OLM solves both at once; this order finds the same
        # answer whenever the API's provider is also a required package)
        for req in sorted(ref.requires, key=lambda r: r.gvk is not None):
            if req.gvk is not None:
                hit = provided_by_installed(req.gvk)
                if hit is not None:
                    if hit[0] in have:
                        order.append(Dependency(ref.name, req, hit[0], installed=hit[1]))
                    continue
                packages = sorted(catalog.packages.values(), key=lambda p: p.name)
            else:
                if req.package in have and _in_range(req, have[req.package][1]):
                    name = have[req.package][0]
                    order.append(Dependency(ref.name, req, req.package, installed=name))
                    continue
                if req.package in chosen:
                    if _in_range(req, chosen[req.package].version):
                        continue
                    raise GraphError(
                        f"{ref.source}: bundle {ref.name} requires {req}, but "
                        f"{chosen[req.package].name} is already chosen for {req.package}"
                    )
                packages = (
                    [catalog.packages[req.package]] if req.package in catalog.packages else []
                )
            options = [b for p in packages if p.name not in chosen for b in _candidates(p, req)]
            if not options:
                where = f"{ref.source}: " if ref.source else ""
                raise GraphError(
                    f"{where}bundle {ref.name} requires {req}, which no bundle in the catalog "
                    "and no installed operator provides"
                )
            pick = options[0]
            if pick.package in trail:
                continue
            chosen[pick.package] = pick
            visit(pick, (*trail, pick.package))
            order.append(Dependency(ref.name, req, pick.package, bundle=pick))

    visit(bundle, (bundle.package,))
    return order
