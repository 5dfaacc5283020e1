"""Judge ``flotilla dev render`` against real Tilt, Tiltfile by Tiltfile.

For each Tiltfile (a directory holding one, or the file itself) this runs
``tilt alpha tiltfile-result -f Tiltfile`` (Tilt's own load result as JSON, no cluster needed) and
``flotilla dev render -f Tiltfile``, reduces both to the same facts and prints ``agree`` or
``differ`` with the differences, then the total. The facts: resource names and types, image refs
with their build (context, Dockerfile contents, build args, target, custom command and deps),
image dependencies, live-update steps (syncs, runs with triggers, restart, fall_back_on), the
Kubernetes objects of each resource (``name:kind``), port-forwards, links, local_resource
commands, deps and serve commands, labels, resource_deps, trigger mode and auto_init, and whether
loading failed.

Tilt is built by ``bench/build_tilt.sh`` (default ``~/.cache/flotilla/tools/tilt-v0.34.0/tilt``,
``--tilt`` or ``$TILT`` override). Both run in the Tiltfile's directory with the same
environment; extensions come from ``--extensions DIR`` (a checkout of tilt-extensions), given to
Tilt as its cached default extension repository (a git clone under a private ``$XDG_DATA_HOME``)
and to flotilla as ``$FLOTILLA_DEV_EXTENSIONS`` (the same clone).

    .venv/bin/python bench/dev_tilt_compare.py [--extensions DIR] [--json OUT] DIR_OR_TILTFILE...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from flotilla.dev.plan.manifests import CLUSTER_SCOPED_KINDS

TILT_VERSION = "v0.34.0"
DEFAULT_TILT = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "flotilla"
    / "tools"
    / f"tilt-{TILT_VERSION}"
    / "tilt"
)
TIMEOUT = 180

Facts = dict[str, Any]
UNCAT = "uncategorized"
EXT_ROOTS: list[Path] = []  # extension repositories: paths inside compare as ``ext:PATH``


# ---------------------------------------------------------------- helpers


def rel(path: str, base: Path) -> str:
    """A path relative to the Tiltfile's directory, so both sides compare."""
    if not path:
        return ""
    p = Path(path)
    if not p.is_absolute():
        return path
    real = os.path.realpath(p)
    for root in EXT_ROOTS:
        if real == str(root) or real.startswith(f"{root}/"):
            return "ext:" + os.path.relpath(real, root)
    try:
        return os.path.relpath(real, base) or "."
    except ValueError:
        return path


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def argv(cmd: Any) -> list[str]:
    """A command as argv: Tilt runs a string command as ``sh -c CMD``."""
    if cmd is None or cmd == "" or cmd == []:
        return []
    if isinstance(cmd, str):
        return ["sh", "-c", cmd]
    return [str(c) for c in cmd]


def map_name(ref: str) -> str:
    """Tilt's ImageMap name for a ref (apis.SanitizeName): how its image_deps are spelled."""
    return re.sub(r"[/%]", "_", ref)


def object_ids(stream: str) -> list[str]:
    out = []
    for doc in yaml.safe_load_all(stream or ""):
        if not isinstance(doc, dict):
            continue
        items = doc.get("items") if str(doc.get("kind", "")).endswith("List") else [doc]
        for obj in items or []:
            meta = obj.get("metadata") or {}
            parts = [str(meta.get("name", "")), str(obj.get("kind", ""))]
            parts += [str(meta["namespace"])] if meta.get("namespace") else []
            out.append(cluster_scoped_without_namespace(":".join(parts).lower()))
    return sorted(out)


CLUSTER_KINDS = {k.lower() for k in CLUSTER_SCOPED_KINDS}


def cluster_scoped_without_namespace(object_id: str) -> str:
    """``name:kind[:namespace]`` without a namespace on a cluster-scoped kind.

    A namespace there means nothing to the API server; Tilt's helm(namespace=) and tilt-extensions'
    namespace_inject set one, flotilla's helm() does not: not a difference.
    """
    parts = object_id.split(":")
    if len(parts) >= 3 and parts[-2] in CLUSTER_KINDS:
        return ":".join(parts[:-1])
    return object_id


def trigger(mode: int) -> tuple[str, bool]:
    """Tilt's TriggerMode enum: (auto|manual, auto_init)."""
    return {0: ("auto", True), 1: ("manual", True), 2: ("manual", False), 3: ("auto", False)}.get(
        mode, ("?", True)
    )


# ---------------------------------------------------------------- tilt side


def tilt_live_update(spec: dict[str, Any], base: Path) -> Facts:
    if not spec or not (spec.get("syncs") or spec.get("execs") or spec.get("stopPaths")):
        return {}
    bp = spec.get("basePath", "")
    syncs = sorted(
        f"{rel(os.path.join(bp, s.get('localPath', '')), base)}->{s.get('containerPath', '')}"
        for s in spec.get("syncs") or []
    )
    runs = [
        {
            "cmd": list(e.get("args") or []),
            "trigger": sorted(rel(os.path.join(bp, t), base) for t in e.get("triggerPaths") or []),
        }
        for e in spec.get("execs") or []
    ]
    return {
        "syncs": syncs,
        "runs": runs,
        "restart": spec.get("restart", "") == "always",
        "fall_back_on": sorted(rel(os.path.join(bp, p), base) for p in spec.get("stopPaths") or []),
    }


def tilt_image(it: dict[str, Any], base: Path) -> tuple[str, Facts]:
    ref = it.get("selector", "")
    bd = it.get("BuildDetails") or {}
    out: Facts = {}
    if "Service" in bd:  # model.DockerComposeBuild: compose builds the service's image
        return ref, {"build": "compose", "context": rel(bd.get("Context", ""), base)}
    if "Deps" in bd:  # model.CustomBuild: a CmdImageSpec plus Deps
        out["build"] = "custom"
        out["command"] = list(bd.get("args") or [])
        out["deps"] = sorted(rel(d, base) for d in bd.get("Deps") or [])
    elif "context" in bd or "dockerfileContents" in bd:  # model.DockerBuild
        out["build"] = "docker"
        out["context"] = rel(bd.get("context", ""), base)
        out["dockerfile"] = digest(bd.get("dockerfileContents", ""))
        out["build_args"] = sorted(bd.get("args") or [])
        out["target"] = bd.get("target", "")
    else:
        out["build"] = "live_update_only" if it.get("IsLiveUpdateOnly") else "?"
    out["image_deps"] = sorted(map_name(d) for d in bd.get("imageMaps") or [])
    out["entrypoint"] = list((it.get("overrideCommand") or {}).get("command") or [])
    args = it.get("overrideArgs")
    out["container_args"] = None if args is None else list(args.get("args") or [])
    lu = tilt_live_update(it.get("LiveUpdateSpec") or {}, base)
    if lu:
        out["live_update"] = lu
    return ref, out


def tilt_links(links: list[dict[str, Any]] | None) -> list[str]:
    out = []
    for lk in links or []:
        u = lk.get("URL") or {}
        out.append(f"{u.get('Scheme', '')}://{u.get('Host', '')}{u.get('Path', '')}")
    return sorted(out)


def tilt_facts(result: dict[str, Any], base: Path) -> Facts:
    resources: dict[str, Facts] = {}
    for m in result.get("Manifests") or []:
        name = m.get("Name", "")
        dt = m.get("DeployTarget") or {}
        mode, auto_init = trigger(int(m.get("TriggerMode", 0)))
        r: Facts = {
            "labels": sorted((m.get("Labels") or {}).keys()),
            "resource_deps": sorted(m.get("ResourceDependencies") or []),
            "trigger_mode": mode,
            "auto_init": auto_init,
            "images": dict(tilt_image(it, base) for it in m.get("ImageTargets") or []),
            "links": tilt_links(dt.get("Links")),
        }
        if "UpdateCmdSpec" in dt:  # model.LocalTarget
            r["type"] = "local"
            r["cmd"] = list((dt.get("UpdateCmdSpec") or {}).get("args") or [])
            r["serve_cmd"] = list((dt.get("ServeCmd") or {}).get("Argv") or [])
            r["deps"] = sorted(rel(d, base) for d in dt.get("Deps") or [])
        elif "PodReadinessMode" in dt:  # model.K8sTarget
            r["type"] = "k8s_custom_deploy" if dt.get("applyCmd") else "k8s"
            r["objects"] = object_ids(dt.get("yaml", ""))
            pf = (dt.get("portForwardTemplateSpec") or {}).get("forwards") or []
            r["port_forwards"] = sorted(
                ("" if p.get("host") in (None, "", "localhost", "127.0.0.1") else f"{p['host']}:")
                + (
                    f"{p.get('localPort', 0)}:{p['containerPort']}"
                    if p.get("containerPort") not in (None, 0, p.get("localPort"))
                    else str(p.get("localPort", 0))
                )
                for p in pf
            )
            if dt.get("applyCmd"):
                r["cmd"] = list(dt["applyCmd"].get("args") or [])
        elif "ServiceYAML" in dt:  # model.DockerComposeTarget
            r["type"] = "dc"
            r["project"] = ((dt.get("Spec") or {}).get("project") or {}).get("name", "")
        else:
            r["type"] = "?"
        resources[name] = r
    return {"error": "", "resources": resources}


# ---------------------------------------------------------------- flotilla side


def flotilla_live_update(steps: list[dict[str, Any]], base: Path) -> Facts:
    syncs, runs, fall, restart = [], [], [], False
    for s in steps:
        if "sync" in s:
            syncs.append(f"{rel(s['sync']['local_path'], base)}->{s['sync']['remote_path']}")
        elif "run" in s:
            runs.append(
                {
                    "cmd": argv(s["run"]["cmd"]),
                    "trigger": sorted(rel(t, base) for t in s["run"].get("trigger") or []),
                }
            )
        elif "fall_back_on" in s:
            fall += [rel(p, base) for p in s["fall_back_on"]]
        elif "restart_container" in s:
            restart = True
    if not (syncs or runs or fall):
        return {}
    return {"syncs": sorted(syncs), "runs": runs, "restart": restart, "fall_back_on": sorted(fall)}


def flotilla_image(img: dict[str, Any], base: Path) -> Facts:
    out: Facts = {}
    if img.get("type") == "custom_build":
        out["build"] = "custom"
        out["command"] = argv(img.get("command"))
        out["deps"] = sorted(rel(d, base) for d in img.get("deps") or [])
    else:
        out["build"] = "docker"
        out["context"] = rel(img.get("context", ""), base)
        df = img.get("dockerfile", "")
        if isinstance(img.get("dockerfile_contents"), str):
            text = img["dockerfile_contents"]
        else:
            try:
                text = Path(df).read_text()
            except OSError:
                text = ""
        out["dockerfile"] = digest(text)
        out["build_args"] = sorted(f"{k}={v}" for k, v in (img.get("build_args") or {}).items())
        out["target"] = img.get("target", "")
    out["image_deps"] = sorted(map_name(d) for d in img.get("image_deps") or [])
    out["entrypoint"] = list(img.get("entrypoint") or [])
    out["container_args"] = img.get("container_args")
    lu = flotilla_live_update(img.get("live_update") or [], base)
    if lu:
        out["live_update"] = lu
    return out


def ports(forwards: list[str]) -> list[str]:
    """``LOCAL:CONTAINER``, or ``LOCAL`` when they are equal (Tilt leaves it 0: inferred)."""
    out = []
    for p in forwards:
        *host, local, container = ["", *str(p).split(":")][-3:] if ":" in str(p) else ["", p, ""]
        pre = f"{host[0]}:" if host and host[0] else ""
        out.append(pre + (local if container in ("", local) else f"{local}:{container}"))
    return sorted(out)


def flotilla_facts(doc: dict[str, Any], base: Path) -> Facts:
    resources: dict[str, Facts] = {}
    for res in doc.get("resources") or []:
        kind = res.get("kind", "")
        r: Facts = {
            "labels": sorted(res.get("labels") or []),
            # every Kubernetes resource waits for `uncategorized` in both; Tilt holds them in its
            # engine (HoldReasonWaitingForUncategorized), flotilla writes it as a resource_dep.
            "resource_deps": sorted(d for d in res.get("resource_deps") or [] if d != UNCAT),
            "trigger_mode": res.get("trigger_mode"),
            "auto_init": bool(res.get("auto_init", True)),
            "images": {i["ref"]: flotilla_image(i, base) for i in res.get("images") or []},
            "links": sorted(lk.get("url", "") for lk in res.get("links") or []),
        }
        if "apply_cmd" in res:
            r["type"] = "k8s_custom_deploy"
            r["images"].update({d: {"image_deps": []} for d in res.get("image_deps") or []})
            r["objects"] = []
            r["port_forwards"] = ports(res.get("port_forwards") or [])
            r["cmd"] = argv(res.get("apply_cmd"))
        elif kind == "local":
            r["type"] = "local"
            r["cmd"] = argv(res.get("cmd"))
            r["serve_cmd"] = argv(res.get("serve_cmd"))
            r["deps"] = sorted(rel(d, base) for d in res.get("deps") or [])
        elif kind in ("k8s", "kubernetes", "uncategorized"):
            r["type"] = "k8s"
            r["objects"] = sorted(map(cluster_scoped_without_namespace, res.get("objects") or []))
            r["port_forwards"] = ports(res.get("port_forwards") or [])
        elif kind == "compose":
            r["type"] = "dc"
            r["project"] = res.get("compose_project", "")
            svc = res.get("service") or {}
            build = svc.get("build")
            ref = svc.get("image") or f"{r['project']}_{res['name']}"
            if build is not None and ref not in r["images"]:
                ctx = build if isinstance(build, str) else build.get("context", ".")
                r["images"][ref] = {"build": "compose", "context": rel(str(ctx), base)}
        else:
            r["type"] = kind
        resources[res["name"]] = r
    # Tilt lists, in each resource, every image its images are built from (transitively);
    # the render lists them once, under the resource that deploys them: add the closure.
    every = {i["ref"]: flotilla_image(i, base) for i in doc.get("base_images") or []}
    for r in resources.values():
        every.update({k: v for k, v in r["images"].items() if v != {"image_deps": []}})
    for r in resources.values():
        todo = [d for i in r["images"].values() for d in i.get("image_deps", [])]
        for ref, img in list(r["images"].items()):
            if img == {"image_deps": []}:  # a k8s_custom_deploy's image_deps: the image itself
                r["images"][ref] = every.get(ref, img)
                todo += r["images"][ref].get("image_deps", [])
        while todo:
            ref = todo.pop()
            ref = next((k for k in every if map_name(k) == ref), ref)
            if ref not in r["images"] and ref in every:
                r["images"][ref] = every[ref]
                todo += every[ref].get("image_deps", [])
    return {"error": "", "resources": resources}


# ---------------------------------------------------------------- running


def run_tilt(tilt: Path, tiltfile: Path, env: dict[str, str]) -> Facts:
    cmd = [str(tilt), "alpha", "tiltfile-result", "-f", tiltfile.name]
    try:
        p = subprocess.run(
            cmd, cwd=tiltfile.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {TIMEOUT}s", "resources": {}}
    if p.returncode != 0:
        # a traceback's innermost frame: FILE:LINE:COL: in FUNCTION
        where = re.findall(r"^\s*(/\S+?):(\d+):\d+: in ", p.stderr, re.MULTILINE)
        return {
            "error": last_line(p.stderr) or f"exit {p.returncode}",
            "where": f"{where[-1][0]}:{where[-1][1]}" if where else "",
            "resources": {},
        }
    try:
        return tilt_facts(json.loads(p.stdout), tiltfile.parent.resolve())
    except (ValueError, TypeError, AttributeError) as exc:
        return {"error": f"unreadable tilt output: {exc}", "where": "", "resources": {}}


def run_flotilla(flotilla: str, tiltfile: Path, env: dict[str, str]) -> Facts:
    cmd = [flotilla, "dev", "render", "-f", tiltfile.name]
    try:
        p = subprocess.run(
            cmd, cwd=tiltfile.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {TIMEOUT}s", "resources": {}}
    if p.returncode != 0:
        where = re.search(r"Error: (/\S+?):(\d+):", p.stderr)
        return {
            "error": last_line(p.stderr) or f"exit {p.returncode}",
            "where": f"{where[1]}:{where[2]}" if where else "",
            "resources": {},
        }
    try:
        doc = next(iter(yaml.safe_load_all(p.stdout)), None) or {}
        return flotilla_facts(doc, tiltfile.parent.resolve())
    except (yaml.YAMLError, TypeError, AttributeError, KeyError) as exc:
        return {"error": f"unreadable render: {exc}", "where": "", "resources": {}}


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[:400]


def diff(tilt: Facts, ours: Facts) -> list[str]:
    out: list[str] = []
    if bool(tilt["error"]) != bool(ours["error"]):
        out.append(f"error: tilt={tilt['error'] or 'none'!r} flotilla={ours['error'] or 'none'!r}")
        return out
    if tilt["error"]:
        # both fail: the same failure when both name the same FILE:LINE (or either names none,
        # e.g. Tilt's errors from a shell command carry no position)
        wt, wf = tilt.get("where", ""), ours.get("where", "")
        if (
            wt
            and wf
            and os.path.realpath(wt.rsplit(":", 1)[0]) + wt[wt.rfind(":") :]
            != (os.path.realpath(wf.rsplit(":", 1)[0]) + wf[wf.rfind(":") :])
        ):
            out.append(f"both fail, at different places: tilt {wt}, flotilla {wf}")
        return out
    tr, fr = tilt["resources"], ours["resources"]
    for name in sorted(set(tr) - set(fr)):
        out.append(f"resource {name}: only in tilt ({tr[name]['type']})")
    for name in sorted(set(fr) - set(tr)):
        out.append(f"resource {name}: only in flotilla ({fr[name]['type']})")
    for name in sorted(set(tr) & set(fr)):
        out += compare(f"{name}", tr[name], fr[name])
    return out


def compare(where: str, a: Any, b: Any) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                if a.get(k) in (None, [], "", {}) and b.get(k) in (None, [], "", {}):
                    continue
                out.append(f"{where}.{k}: tilt={a.get(k)!r} flotilla={b.get(k)!r}")
                continue
            out += compare(f"{where}.{k}", a[k], b[k])
        return out
    return [] if a == b else [f"{where}: tilt={a!r} flotilla={b!r}"]


def tilt_env(base_env: dict[str, str], extensions: Path | None, work: Path) -> dict[str, str]:
    """A private XDG data dir: Tilt's default extension repo is a clone of ``extensions``."""
    env = dict(base_env, XDG_DATA_HOME=str(work / "data"), XDG_CONFIG_HOME=str(work / "config"))
    env["XDG_STATE_HOME"] = str(work / "state")
    if extensions is not None:
        dest = work / "data" / "tilt-dev" / "tilt_modules" / "github.com" / "tilt-dev"
        dest.mkdir(parents=True, exist_ok=True)
        repo = dest / "tilt-extensions"
        if not repo.exists():
            shutil.copytree(extensions, repo, symlinks=True)
            if not (repo / ".git").exists():
                git = ["git", "-C", str(repo), "-c", "user.name=x", "-c", "user.email=x@x"]
                subprocess.run([*git, "init", "-q"], check=True)
                subprocess.run([*git, "add", "-A"], check=True)
                subprocess.run([*git, "commit", "-qm", "snapshot"], check=True)
    return env


def find_tiltfiles(paths: list[str]) -> list[Path]:
    out = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            out.append(path)
        elif (path / "Tiltfile").is_file():
            out.append(path / "Tiltfile")
        else:
            print(f"skip {p}: no Tiltfile", file=sys.stderr)
    return out


def main(argv_: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="directories holding a Tiltfile, or Tiltfiles")
    ap.add_argument("--tilt", default=os.environ.get("TILT") or str(DEFAULT_TILT))
    beside = Path(sys.executable).parent / "flotilla"  # the venv's, not another checkout's
    ap.add_argument("--flotilla", default=str(beside) if beside.is_file() else "flotilla")
    ap.add_argument("--extensions", type=Path, help="a tilt-extensions checkout for ext://")
    ap.add_argument(
        "--builtin-extensions",
        action="store_true",
        help="flotilla serves restart_process and namespace built in; only Tilt reads --extensions",
    )
    ap.add_argument("--json", type=Path, help="write per-Tiltfile facts and differences here")
    ap.add_argument("-q", "--quiet", action="store_true", help="only the per-Tiltfile verdicts")
    args = ap.parse_args(argv_)
    tilt = Path(args.tilt)
    if not tilt.is_file():
        ap.error(f"no tilt at {tilt}: run bench/build_tilt.sh")
    base_env = dict(os.environ, TILT_DISABLE_ANALYTICS="1", TILT_DEV_DIR="")
    base_env.pop("TILT_DEV_DIR")
    records = []
    agree = 0
    with tempfile.TemporaryDirectory(prefix="tilt-compare-") as tmp:
        env_t = tilt_env(base_env, args.extensions, Path(tmp))
        env_f = dict(base_env)
        if args.extensions is not None:
            # both read the same clone, laid out as Tilt keeps it (under `tilt_modules`)
            clone = Path(tmp, "data/tilt-dev/tilt_modules/github.com/tilt-dev/tilt-extensions")
            EXT_ROOTS.append(clone.resolve())
            if not args.builtin_extensions:
                env_f["FLOTILLA_DEV_EXTENSIONS"] = str(clone)
        tiltfiles = find_tiltfiles(args.paths)
        for tf in tiltfiles:
            t = run_tilt(tilt, tf, env_t)
            f = run_flotilla(args.flotilla, tf, env_f)
            d = diff(t, f)
            ok = not d
            agree += ok
            both_err = " (both fail)" if t["error"] and f["error"] else ""
            print(f"{'agree ' if ok else 'differ'} {tf}{both_err}", flush=True)
            if not args.quiet:
                for line in d:
                    print(f"    {line}")
                if both_err:
                    print(f"    tilt: {t['error']}\n    flotilla: {f['error']}")
            records.append({"tiltfile": str(tf), "agree": ok, "diff": d, "tilt": t, "flotilla": f})
    fail_same = sum(r["agree"] and bool(r["tilt"]["error"]) for r in records)
    print(
        f"total: {agree} of {len(records)} agree with tilt {tilt_version(tilt)} "
        f"({agree - fail_same} render the same, {fail_same} fail the same way)"
    )
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str))
    return 0 if agree == len(records) else 1


def tilt_version(tilt: Path) -> str:
    p = subprocess.run([str(tilt), "version"], capture_output=True, text=True, check=False)
    return shlex.split(p.stdout or "?")[0].rstrip(",")


if __name__ == "__main__":
    sys.exit(main())
