"""``flotilla dev down``: stop the ``up`` of a Tiltfile and delete what it deployed.

Objects come from the Tiltfile (re-evaluated, as ``tilt down`` does) and from the record ``up``
wrote, so objects dropped from the Tiltfile since are removed too. Namespaces and objects
annotated ``tilt.dev/down-policy: keep`` stay unless asked (Tilt's rules, tilt#3165, #3827).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from flotilla.dev.runtime.state import clear_record, read_record

KEEP_ANNOTATION = "tilt.dev/down-policy"


def _stop_pid(pid: int) -> bool:
    """SIGTERM a running ``flotilla dev up`` (checked by its command line); True if it was."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if pid == os.getpid() or b"up" not in cmdline or not any(b"flotilla" in a for a in cmdline):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    return True


def run_delete_cmd(cmd: tuple[str, ...] | str, cwd: str, env: dict[str, str]) -> None:
    """A ``k8s_custom_deploy``'s ``delete_cmd``, as ``tilt down`` runs it."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    if argv:
        subprocess.run(argv, cwd=cwd or None, env={**os.environ, **env}, check=False, timeout=600)


def keep(obj: dict[str, Any], delete_namespaces: bool) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(KEEP_ANNOTATION) == "keep":
        return True
    return obj.get("kind") == "Namespace" and not delete_namespaces


def teardown(
    tiltfile: Path,
    kubeconfig: Path | None,
    namespace: str,
    args: list[str],
    docker_host: str | None,
    *,
    delete_namespaces: bool = False,
) -> str:
    from flotilla.dev.runtime.engine import Engine, EngineConfig

    record = read_record(tiltfile)
    stopped = _stop_pid(int(record.get("pid") or 0)) if record.get("pid") else False
    engine = Engine(
        EngineConfig(
            tiltfile=tiltfile,
            kubeconfig=kubeconfig,
            namespace=namespace,
            args=args,
            docker_host=docker_host,
            watch=False,
            subcommand="down",
        )
    )
    deleted = removed = 0
    try:
        engine.load()
        objs: list[dict[str, Any]] = []
        if engine.kube is not None:
            for r in engine.resources:
                objs += [engine.kube.prepare(o, r.name) for o in r.objects]
        seen = {(o["kind"], o["metadata"]["name"]) for o in objs}
        for o in record.get("objects") or []:
            if (o["kind"], o["name"]) not in seen:
                objs.append(
                    {
                        "apiVersion": o["apiVersion"],
                        "kind": o["kind"],
                        "metadata": {"name": o["name"], "namespace": o.get("namespace")},
                    }
                )
        objs = [o for o in objs if not keep(o, delete_namespaces)]
        if engine.kube is not None and objs:
            deleted = engine.kube.delete(objs)
        projects = set(record.get("compose") or []) | {
            p.project_name for p in (engine.result.compose if engine.result else [])
        }
        if projects:
            from flotilla.dev.runtime.compose import ComposeRunner

            assert engine.builder is not None
            runner = engine.compose or ComposeRunner(engine.builder)
            removed = sum(runner.down(p) for p in sorted(projects))
        for cd in engine.result.custom_deploys if engine.result else []:
            run_delete_cmd(cd.delete_cmd, cd.delete_dir, cd.delete_env)
    finally:
        engine.stop()
    clear_record(tiltfile)
    parts = [f"deleted {deleted} object(s)"]
    if removed:
        parts.append(f"removed {removed} compose container(s)")
    if stopped:
        parts.insert(0, "stopped the running `flotilla dev up`")
    return "; ".join(parts)
