"""The Java runtime on the build host: the runtime jar and a function's classes, built with Maven.

The runtime (``fn/java``: its pom pins every dependency, the CloudEvents Java SDK and
Jackson) is built once per hash of its sources by ``mvn install`` into
``~/.cache/flotilla/fn/java-runtime/<hash>`` (``flotilla-fn.jar`` and ``lib/``); installing
also puts it in ``~/.m2`` so function projects compile against it. A function project is built
by ``mvn package`` into ``~/.cache/flotilla/fn/java-build/<hash of its path>`` (its pom reads
``flotilla.buildDir``), again only when its pom or sources changed. ``python -m
flotilla.fn.jvm`` is what ``fn run`` starts: build, then exec java. Java starts from an AppCDS
archive of the runtime (:func:`class_archive`): a cold start then reads about 50 classes from jars
and modules instead of about 1,000.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .deps import DependencyError, cache_root

__all__ = [
    "JAVA_LIB",
    "JVM_OPTIONS",
    "MAIN_CLASS",
    "BuiltFunction",
    "JavaBuildError",
    "build_function",
    "class_archive",
    "compile_error",
    "java_argv",
    "java_runtime",
    "jvm_command",
    "runtime_jars",
    "training_command",
]

JAVA_LIB = Path(__file__).resolve().parent / "java"
MAIN_CLASS = "dev.flotilla.fn.Main"
# Serial GC and no heap reservation games: one small instance per pod, quick to start.
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Dfile.encoding=UTF-8")
_COMPILE_ERROR = re.compile(r"^\[ERROR\] (/\S+\.java):\[(\d+),(\d+)\] (.*)$")


class JavaBuildError(DependencyError):
    """Maven could not build the runtime or the function; one line saying where and why."""


@dataclass(frozen=True)
class BuiltFunction:
    classes: Path
    lib: Path


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise JavaBuildError(f"{name} is not installed (Debian package {package})")
    return found


def _tree_hash(root: Path, names: list[Path], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in names:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


def _sources(root: Path) -> list[Path]:
    files = [root / "pom.xml"]
    main = root / "src" / "main"
    if main.is_dir():
        files += sorted(p for p in main.rglob("*") if p.is_file())
    return files


def compile_error(output: str) -> str:
    """The first compiler error as ``file:line: error: message``, else Maven's first error line."""
    errors = [line.strip() for line in output.splitlines() if line.startswith("[ERROR]")]
    for line in errors:
        match = _COMPILE_ERROR.match(line)
        if match:
            path, row, _col, message = match.groups()
            return f"{path}:{row}: error: {message}"
    for line in errors:
        text = line.removeprefix("[ERROR]").strip()
        if text and not text.startswith(("->", "To see", "Re-run", "For more", "[Help")):
            return text
    lines = output.strip().splitlines()
    return lines[-1] if lines else "no output"


def _mvn(args: list[str], cwd: Path, what: str) -> None:
    argv = [_tool("mvn", "maven"), "-B", "-q", "-Dstyle.color=never", *args]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise JavaBuildError(f"{what}: {compile_error(proc.stdout + proc.stderr)}")


def java_runtime(cache: Path | None = None) -> Path:
    """``flotilla-fn.jar`` and ``lib/`` of the runtime, built (and installed to ~/.m2) once."""
    root = (cache or cache_root()) / "fn" / "java-runtime"
    target = root / _tree_hash(JAVA_LIB, _sources(JAVA_LIB))
    if (target / ".complete").exists():
        return target
    work = root / f"{target.name}.tmp{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(JAVA_LIB, work / "src-tree", ignore=shutil.ignore_patterns("target"))
    _mvn(["install", "-DskipTests"], work / "src-tree", "building the Java runtime failed")
    built = work / "src-tree" / "target"
    shutil.copyfile(built / "flotilla-fn.jar", work / "flotilla-fn.jar")
    shutil.copytree(built / "lib", work / "lib")
    shutil.rmtree(work / "src-tree")
    (work / ".complete").write_text("ok\n")
    try:
        work.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(work, ignore_errors=True)
    return target


def build_function(project: Path, cache: Path | None = None) -> BuiltFunction:
    """The function's classes and runtime dependencies, rebuilt only when its sources change."""
    project = project.resolve()
    if not (project / "pom.xml").is_file():
        raise JavaBuildError(f"{project / 'pom.xml'} is missing (fn init --runtime java makes one)")
    runtime = java_runtime(cache)
    key = hashlib.sha256(str(project).encode()).hexdigest()[:16]
    out = (cache or cache_root()) / "fn" / "java-build" / key
    stamp = _tree_hash(project, _sources(project), extra=runtime.name)
    built = BuiltFunction(out / "classes", out / "lib")
    if (out / ".stamp").is_file() and (out / ".stamp").read_text() == stamp:
        return built
    (out / ".stamp").unlink(missing_ok=True)
    _mvn(
        ["package", "-DskipTests", f"-Dflotilla.buildDir={out}"],
        project,
        "cannot build function",
    )
    if not built.classes.is_dir():
        raise JavaBuildError(
            f"{project / 'pom.xml'}: no classes in {built.classes} "
            "(the pom's <build><directory> must be ${flotilla.buildDir})"
        )
    built.lib.mkdir(parents=True, exist_ok=True)
    (out / ".stamp").write_text(stamp)
    return built


def runtime_jars(runtime: Path) -> list[Path]:
    """The runtime's jars in class-path order (named one by one, not ``lib/*``: an archive is only
    valid for the exact class-path prefix it was dumped with)."""
    return [runtime / "flotilla-fn.jar", *sorted((runtime / "lib").glob("*.jar"))]


def training_command(java: str, runtime_classpath: list[str], archive: str) -> list[str]:
    """The training run that dumps the class-data archive at exit (``Main --train``)."""
    classpath = ":".join(runtime_classpath)
    archive_option = f"-XX:ArchiveClassesAtExit={archive}"
    return [java, *JVM_OPTIONS, archive_option, "-cp", classpath, MAIN_CLASS, "--train"]


def jvm_command(
    java: str, runtime_classpath: list[str], function_classpath: list[str], archive: str | None
) -> list[str]:
    """``java`` as both ``fn run`` and the image start it: the runtime's jars first (the prefix
    the archive was trained with), then the function's classes and libraries."""
    classpath = ":".join([*runtime_classpath, *function_classpath])
    shared = [f"-XX:SharedArchiveFile={archive}"] if archive else []
    return [java, *JVM_OPTIONS, *shared, "-cp", classpath, MAIN_CLASS]


def _jvm_key(java: str) -> str:
    """Which JVM an archive belongs to: it is refused by any other build of the JVM."""
    real = Path(java).resolve()
    libjvm = real.parent.parent / "lib" / "server" / "libjvm.so"
    st = (libjvm if libjvm.is_file() else real).stat()
    return hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:12]


def class_archive(runtime: Path) -> Path | None:
    """The runtime's AppCDS archive for the installed JVM, made once by a training run that
    serves a built-in function (no user code). ``None``, with one line on stderr, when the JVM
    could not make one: the function then starts without it, only slower."""
    java = _tool("java", "openjdk-17-jre-headless")
    archive = runtime / f"cds-{_jvm_key(java)}.jsa"
    if archive.is_file():
        return archive
    work = archive.with_name(f"{archive.name}.tmp{os.getpid()}")
    argv = training_command(java, [str(p) for p in runtime_jars(runtime)], str(work))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None or proc.returncode != 0 or not work.is_file():
        work.unlink(missing_ok=True)
        if proc is None:
            why = "the training run took longer than 120 s"
        else:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit {proc.returncode}"
        print(f"java: no class-data archive ({why}); starting without it", file=sys.stderr)
        return None
    work.replace(archive)
    return archive


def java_argv(runtime: Path, built: BuiltFunction, archive: Path | None = None) -> list[str]:
    """``fn run``'s ``java``: see :func:`jvm_command`."""
    return jvm_command(
        _tool("java", "openjdk-17-jre-headless"),
        [str(p) for p in runtime_jars(runtime)],
        [str(built.classes), str(built.lib / "*")],
        str(archive) if archive else None,
    )


def main() -> None:
    """Build (when changed), then become the JVM, so signals reach the runtime directly."""
    project = Path(os.environ.get("FLOTILLA_FN_SOURCE", "."))
    try:
        runtime = java_runtime()
        argv = java_argv(runtime, build_function(project), class_archive(runtime))
    except DependencyError as exc:
        print(f"cannot load function: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, dict(os.environ))


if __name__ == "__main__":
    main()
