"""Realistic chart sources for the charts tests: dependencies, a library chart, annotations,
pre-release and build-metadata versions, and a chart with a large values.yaml."""

from __future__ import annotations

import io
import tarfile
import textwrap
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def library_chart(root: Path, version: str = "0.3.0") -> Path:
    """A library chart (type: library) offering named templates, used via file://."""
    d = root / "common"
    write(
        d / "Chart.yaml",
        f"""
        apiVersion: v2
        name: common
        description: Shared named templates
        type: library
        version: "{version}"
        icon: https://example.com/common.png
        """,
    )
    write(
        d / "templates" / "_labels.tpl",
        """
        {{- define "common.labels" -}}
        app.kubernetes.io/name: {{ .Chart.Name }}
        app.kubernetes.io/version: {{ .Chart.AppVersion | default .Chart.Version | quote }}
        {{- end -}}
        """,
    )
    return d


def sidecar_chart(parent: Path) -> Path:
    """A vendored subchart directory in charts/, as `helm dependency build` leaves them."""
    d = parent / "charts" / "sidecar"
    write(
        d / "Chart.yaml",
        """
        apiVersion: v2
        name: sidecar
        version: 2.1.0
        appVersion: "2.1"
        """,
    )
    write(d / "values.yaml", "image: busybox:1.36\n")
    write(
        d / "templates" / "configmap.yaml",
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-sidecar
        data:
          image: {{ .Values.image | quote }}
        """,
    )
    return d


def webapp_chart(
    root: Path, version: str = "1.0.0", name: str = "webapp", app_version: str = "4.2.0"
) -> Path:
    """An application chart with a file:// library dependency and a vendored subchart."""
    d = root / name
    library_chart(root)
    write(
        d / "Chart.yaml",
        f"""
        apiVersion: v2
        name: {name}
        description: A web application with a library and a sidecar
        type: application
        version: "{version}"
        appVersion: "{app_version}"
        kubeVersion: ">=1.25.0-0"
        home: https://example.com/webapp
        icon: https://example.com/webapp.png
        keywords: [web, demo]
        sources:
          - https://github.com/example/webapp
        maintainers:
          - name: Ada Lovelace
            email: ada@example.com
            url: https://example.com/ada
        annotations:
          artifacthub.io/license: Apache-2.0
          artifacthub.io/prerelease: "false"
          artifacthub.io/changes: |
            - kind: added
              description: first release
          example.com/multi-line: "line one\\nline two"
        dependencies:
          - name: common
            version: ">=0.1.0"
            repository: file://../common
          - name: sidecar
            version: 2.x
            repository: https://charts.example.com
            condition: sidecar.enabled
            tags: [extras]
        """,
    )
    write(
        d / "values.yaml",
        """
        replicaCount: 2
        image:
          repository: nginx
          tag: "1.27"
        sidecar:
          enabled: true
        """,
    )
    write(
        d / "templates" / "deployment.yaml",
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-{{ .Chart.Name }}
          labels:
            {{- include "common.labels" . | nindent 4 }}
        spec:
          replicas: {{ .Values.replicaCount }}
          selector:
            matchLabels:
              app: {{ .Release.Name }}
          template:
            metadata:
              labels:
                app: {{ .Release.Name }}
            spec:
              containers:
                - name: web
                  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
        """,
    )
    write(d / "templates" / ".hidden-scratch.yaml", "not: packaged\n")
    write(d / ".helmignore", "*.bak\nscratch/\n")
    write(d / "notes.bak", "ignored\n")
    write(d / "scratch" / "junk.txt", "ignored\n")
    sidecar_chart(d)
    return d


def big_values_chart(root: Path, version: str = "0.1.0", entries: int = 20000) -> Path:
    """A chart whose values.yaml is about 1 MiB."""
    d = root / "bigvalues"
    write(
        d / "Chart.yaml",
        f"""
        apiVersion: v2
        name: bigvalues
        description: A chart with a large values.yaml
        version: "{version}"
        """,
    )
    lines = ["settings:"] + [f"  key{i:05d}: value-{i:05d}-{'x' * 24}" for i in range(entries)]
    (d / "values.yaml").write_text("\n".join(lines) + "\n")
    write(
        d / "templates" / "cm.yaml",
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-big
        data:
          count: {{ len .Values.settings | quote }}
        """,
    )
    return d


def simple_chart(root: Path, name: str, version: str, description: str = "simple") -> Path:
    d = root / name
    write(
        d / "Chart.yaml",
        f"""
        apiVersion: v2
        name: {name}
        description: {description}
        version: "{version}"
        """,
    )
    write(
        d / "templates" / "cm.yaml",
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}
        """,
    )
    return d


def raw_archive(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A hand-made .tgz for hostile-input tests."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def member(
    name: str, data: bytes | None = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, (data if kind == tarfile.REGTYPE else None)


CHART_YAML = b"apiVersion: v2\nname: evil\nversion: 1.0.0\n"
