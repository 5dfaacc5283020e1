"""`flotilla charts ...` end to end through its Typer app, including signing checked by helm."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from chart_factory import member, raw_archive, simple_chart, webapp_chart, write
from charts_support import GpgKey, Helm
from typer.testing import CliRunner

from flotilla.charts import index as idx
from flotilla.charts.cli import app

runner = CliRunner()


def test_lint_passes_good_and_fails_bad_charts(tmp_path: Path) -> None:
    good = webapp_chart(tmp_path)
    result = runner.invoke(app, ["lint", str(good)])
    assert result.exit_code == 0, result.output
    bad = write(tmp_path / "bad" / "Chart.yaml", "apiVersion: v2\nname: bad\nversion: one\n")
    result = runner.invoke(app, ["lint", str(bad.parent)])
    assert result.exit_code == 1
    assert f"[ERROR] {bad}: version: 'one' is not a valid SemVer 2 version" in result.output
    both = runner.invoke(app, ["lint", str(bad.parent), str(good)])
    assert both.exit_code == 1 and f"{good}: ok" in both.output
    assert f"{bad.parent}: FAILED" in both.output
    strict = runner.invoke(app, ["lint", "--strict", str(simple_chart(tmp_path, "Loud", "1.0.0"))])
    assert strict.exit_code == 1 and "naming convention" in strict.output


def test_package_sign_and_helm_verify(tmp_path: Path, gpg_key: GpgKey, helm: Helm) -> None:
    chart = webapp_chart(tmp_path / "src", version="3.0.0-rc.1+sha.5114f85")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "package",
            str(chart),
            "-d",
            str(out),
            "--sign",
            "--key",
            "charts-test@example.com",
            "--keyring",
            str(gpg_key.secret_keyring),
        ],
    )
    assert result.exit_code == 0, result.output
    archive = out / "webapp-3.0.0-rc.1+sha.5114f85.tgz"
    prov = Path(f"{archive}.prov").read_text()
    assert prov.startswith("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n")
    assert f"files:\n  {archive.name}: sha256:" in prov and "\n...\n" in prov
    verified = helm.run("verify", str(archive), "--keyring", str(gpg_key.public_keyring))
    assert "Signed by: Flotilla Charts Test" in verified.stdout + verified.stderr


def test_sign_without_a_usable_key_is_a_clear_error(tmp_path: Path, gpg_key: GpgKey) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    no_key = runner.invoke(app, ["package", str(chart), "-d", str(tmp_path), "--sign"])
    assert no_key.exit_code == 1 and "--sign needs --key" in no_key.output
    wrong = runner.invoke(
        app,
        [
            "package",
            str(chart),
            "-d",
            str(tmp_path),
            "--sign",
            "--key",
            "nobody@example.com",
            "--keyring",
            str(gpg_key.secret_keyring),
        ],
    )
    assert wrong.exit_code == 1 and "gpg could not sign with key 'nobody@example.com'" in (
        wrong.output
    )


def test_index_command_and_hostile_archive(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    runner.invoke(app, ["package", str(simple_chart(tmp_path, "app", "1.0.0")), "-d", str(repo)])
    result = runner.invoke(app, ["index", str(repo), "--url", "https://x.test"])
    assert result.exit_code == 0, result.output
    assert idx.load((repo / "index.yaml").read_bytes()).get("app", "1.0.0") is not None
    (repo / "zz-1.0.0.tgz").write_bytes(raw_archive([member("/abs/Chart.yaml", b"x")]))
    result = runner.invoke(app, ["index", str(repo), "--url", "https://x.test"])
    assert result.exit_code == 1 and "absolute path" in result.output
    result = runner.invoke(app, ["index", str(repo), "--skip-invalid"])
    assert result.exit_code == 0 and "skipped:" in result.output


def test_publish_command_twice(tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    charts = tmp_path / "charts"
    simple_chart(charts, "one", "1.0.0")
    simple_chart(charts, "two", "0.1.0-beta.1")
    args = ["publish", str(charts), "--repo", str(bare), "--url", "https://x.test"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "published: one-1.0.0" in first.output and "published: two-0.1.0-beta.1" in first.output
    # Not on a terminal (the runner's stderr is not one): plain progress lines, on stderr only.
    doing = f"publishing {charts} to {bare} (gh-pages)"
    progress = first.stderr.splitlines()
    assert progress[0] == f"{doing}: started [0s]", progress
    assert re.fullmatch(rf"{re.escape(doing)}: done \[\d+s\]", progress[-1]), progress
    assert "publishing" not in first.stdout
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "nothing new to publish" in second.output


def test_armored_secret_key_signs_too(tmp_path: Path, gpg_key: GpgKey, helm: Helm) -> None:
    armored = tmp_path / "key.asc"
    armored.write_bytes(
        subprocess.run(
            ["gpg", "--batch", "--armor", "--export-secret-keys", gpg_key.name],
            env={**os.environ, "GNUPGHOME": str(gpg_key.home)},
            check=True,
            capture_output=True,
        ).stdout
    )
    chart = simple_chart(tmp_path / "src", "app", "1.0.0")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "package",
            str(chart),
            "-d",
            str(out),
            "--sign",
            "--key",
            gpg_key.name,
            "--keyring",
            str(armored),
        ],
    )
    assert result.exit_code == 0, result.output
    helm.run("verify", str(out / "app-1.0.0.tgz"), "--keyring", str(gpg_key.public_keyring))
