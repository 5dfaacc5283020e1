"""Chart versions: Flotilla's helm dialect against a table whose verdicts the real helm gives.

Each case is a ``version`` in Chart.yaml and what helm v3 does with it: does ``helm package``
accept the chart, and does ``helm lint`` pass. The pure test holds Flotilla to the table; the
helm test checks the table against the real binary, so a verdict can't be a guess of ours.
Flotilla may be stricter than helm (it refuses to package what ``helm lint`` calls an error),
never looser.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_factory import simple_chart
from charts_support import Helm

from flotilla.charts import versions
from flotilla.charts.chartfile import Severity
from flotilla.charts.errors import ChartError
from flotilla.charts.linting import lint_directory
from flotilla.charts.packaging import PackageOptions, package_chart

# version -> (helm package accepts it, helm lint passes)
HELM_VERDICTS: dict[str, tuple[bool, bool]] = {
    "1.0.0": (True, True),
    "v1.0.0": (True, True),  # a leading v is accepted
    "1.2": (True, True),  # short forms are coerced to 1.2.0
    "1": (True, True),
    "v2": (True, True),
    "v1.2-rc.1": (True, True),
    "01.2.3": (True, True),  # leading zeros in the numbers are coerced away
    "1.02.03": (True, True),
    "1.0.0-0": (True, True),
    "1.0.0-rc.1": (True, True),
    "1.0.0-0a": (True, True),  # alphanumeric, so the leading zero is fine
    "1.0.0-1.2.3.4": (True, True),
    "1.0.0+01": (True, True),  # build metadata may have leading zeros
    "1.2.3-beta+exp.sha.5114f85": (True, True),
    "1.0.0-01": (False, False),  # numeric pre-release identifier with a leading zero
    "1.0.0-rc.01": (False, False),
    "1.0.0-": (False, False),
    "1.0.0+": (False, False),
    "1.0.0-rc..1": (False, False),
    "1.0.0-rc_1": (False, False),
    "1.0.0.0": (False, False),
    "V1.0.0": (False, False),
    "vv1.0.0": (False, False),
    " 1.0.0": (False, False),
    "1.0.0 ": (False, False),
    "latest": (False, False),
    "1.x": (False, False),
    "1.0.0-\u00e9": (False, False),
    "0.0.0": (True, True),  # lint wants > 0.0.0-0, and a release is above its pre-releases
    "0.0.0-0": (True, False),  # ... but 0.0.0-0 is not
    "0.0.0-1": (True, True),
    "0.0.1": (True, True),
    "18446744073709551615.0.0": (True, True),  # numbers are uint64
    "18446744073709551616.0.0": (False, False),
    "1.0.0-" + "a" * 260: (False, False),  # over 256 bytes
}


def _flotilla_verdict(chart: Path) -> tuple[bool, bool]:
    try:
        package_chart(chart, PackageOptions(mtime=0))
        packaged = True
    except ChartError:
        packaged = False
    lint_ok = not any(f.severity is Severity.ERROR for f in lint_directory(chart))
    return packaged, lint_ok


@pytest.mark.parametrize("version", sorted(HELM_VERDICTS))
def test_flotilla_follows_the_helm_table(version: str, tmp_path: Path) -> None:
    helm_package, helm_lint = HELM_VERDICTS[version]
    packaged, lint_ok = _flotilla_verdict(simple_chart(tmp_path, "demo", version))
    assert lint_ok == helm_lint, version
    assert packaged == (helm_package and helm_lint), version
    assert (versions.parse(version) is not None) == helm_package, version


def test_the_table_is_what_helm_does(helm: Helm, tmp_path: Path) -> None:
    wrong = []
    for i, (version, expected) in enumerate(sorted(HELM_VERDICTS.items())):
        chart = simple_chart(tmp_path / str(i), "demo", version)
        package = helm.run("package", str(chart), "-d", str(tmp_path / "out"), check=False)
        lint = helm.run("lint", str(chart), check=False)
        actual = (package.returncode == 0, lint.returncode == 0)
        if actual != expected:
            wrong.append(
                f"{version!r}: table says {expected}, helm says {actual}: "
                f"{package.stderr.strip()[-200:]} {lint.stdout.strip()[-200:]}"
            )
    assert not wrong, "\n".join(wrong)


def test_order_follows_precedence_not_spelling() -> None:
    ordered = versions.newest_first(
        ["1.0.0-rc.2", "v1.0", "1.0.0-rc.10", "1.0.0-alpha", "0.9.0", "1.0.0-rc.1", "1.0.0-1"]
    )
    assert ordered == [
        "v1.0",
        "1.0.0-rc.10",
        "1.0.0-rc.2",
        "1.0.0-rc.1",
        "1.0.0-alpha",
        "1.0.0-1",
        "0.9.0",
    ]
