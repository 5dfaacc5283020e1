"""Build a tiny Go program around blang/semver v4 (the range parser OLM uses) to act as an oracle.

Flotilla never runs it; the tests ask it whether a ``skipRange`` parses and which versions it
matches, so the verdicts in ``test_semver_blang.py`` are blang's, not our reading of it. The
program is ours; it lives with its build in ``$XDG_CACHE_HOME/flotilla/tools/`` beside helm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BLANG_VERSION = "v4.0.0"

_MAIN_GO = """package main

import (
	"bufio"
	"encoding/json"
	"os"

	"github.com/blang/semver/v4"
)

type query struct {
	Range  string   `json:"range"`
	Probes []string `json:"probes"`
}

type answer struct {
	Valid   bool   `json:"valid"`
	Matches []bool `json:"matches"`
	Panics  bool   `json:"panics"`
}

func check(r semver.Range, v semver.Version) (m bool, panicked bool) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	return r(v), false
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var q query
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			panic(err)
		}
		a := answer{Matches: []bool{}}
		if r, err := semver.ParseRange(q.Range); err == nil {
			a.Valid = true
			for _, p := range q.Probes {
				m, pan := check(r, semver.MustParse(p))
				a.Matches = append(a.Matches, m)
				a.Panics = a.Panics || pan
			}
		}
		out.Encode(a)
	}
}
"""


class OracleBuildError(RuntimeError):
    """The oracle could not be built; the message says which step failed."""


@dataclass(frozen=True)
class Verdict:
    valid: bool
    matches: tuple[bool, ...]
    panics: bool


def oracle_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flotilla" / "tools" / f"blang-semver-oracle-{BLANG_VERSION}" / "oracle"


def ensure_oracle() -> Path:
    """The oracle binary, built with ``go`` (from the module cache or the Go proxy) when missing."""
    target = oracle_path()
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        raise OracleBuildError("cannot build the blang/semver oracle: no `go` on PATH")
    src = target.parent / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(_MAIN_GO)
    (src / "go.mod").write_text(
        "module flotilla.test/blangoracle\n\ngo 1.22\n\n"
        f"require github.com/blang/semver/v4 {BLANG_VERSION}\n"
    )
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod")
    for cmd in ([go, "mod", "tidy"], [go, "build", "-o", str(target), "."]):
        proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise OracleBuildError(f"`{' '.join(cmd)}` failed: {proc.stderr[-2000:]}")
    return target


def ask(oracle: Path, queries: list[tuple[str, list[str]]]) -> list[Verdict]:
    """blang's verdict for each (range, probe versions); probes must be valid versions."""
    lines = "".join(json.dumps({"range": r, "probes": p}) + "\n" for r, p in queries)
    proc = subprocess.run(
        [str(oracle)], input=lines, capture_output=True, text=True, timeout=120, check=True
    )
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    return [Verdict(a["valid"], tuple(a["matches"]), a["panics"]) for a in answers]
