"""Audit a directory of generated RBAC manifests and print the time.

Goals: 60,000 objects with the table report under 10 s (the default); 2,000 with JSON under 2 s.

The mix looks like a fleet's worth of operators: ClusterRoles and Roles with several rules,
their bindings, CRDs, webhook configurations and a ClusterServiceVersion per 100 files.
Usage: .venv/bin/python bench/operators_audit.py [--count N] [--repeat R] [--output table|json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from flotilla.operators.audit import audit
from flotilla.operators.loading import load_inputs
from flotilla.operators.report import report_json, report_text

RULES = """- apiGroups: [""]
  resources: [pods, services, configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: ["*"]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list]
- apiGroups: [example{i}.com]
  resources: [widgets, widgets/status]
  verbs: [get, list, watch, update, patch]
"""


def manifest(i: int) -> str:
    kind = i % 20
    if kind < 6:
        return (
            f"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
            f"metadata:\n  name: role-{i}\nrules:\n" + RULES.format(i=i)
        )
    if kind < 10:
        return (
            f"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
            f"metadata:\n  name: bind-{i}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n"
            f"  kind: ClusterRole\n  name: role-{i - 4}\nsubjects:\n"
            f"- kind: ServiceAccount\n  name: sa-{i}\n  namespace: ns-{i % 50}\n"
        )
    if kind < 13:
        return (
            f"apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n"
            f"  name: role-{i}\n  namespace: ns-{i % 50}\nrules:\n" + RULES.format(i=i)
        )
    if kind < 16:
        return (
            f"apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n"
            f"  name: bind-{i}\n  namespace: ns-{(i - 3) % 50}\nroleRef:\n"
            f"  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: role-{i - 3}\n"
            f"subjects:\n- kind: ServiceAccount\n  name: sa-{i}\n"
        )
    if kind < 19:
        return (
            f"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            f"metadata:\n  name: widgets.example{i}.com\nspec:\n  group: example{i}.com\n"
            f"  names: {{kind: Widget, plural: widgets}}\n  scope: Namespaced\n"
            f"  versions:\n  - name: v1\n    served: true\n    storage: true\n"
            f"    schema:\n      openAPIV3Schema:\n        type: object\n"
            f"        properties:\n          spec: {{type: object}}\n"
        )
    if i % 100 == 19:
        return (
            f"apiVersion: operators.coreos.com/v1alpha1\nkind: ClusterServiceVersion\n"
            f"metadata:\n  name: op{i}.v1.0.{i}\nspec:\n  installModes:\n"
            f"  - {{type: AllNamespaces, supported: true}}\n  install:\n"
            f"    strategy: deployment\n    spec:\n      clusterPermissions:\n"
            f"      - serviceAccountName: op{i}\n        rules:\n"
            + "".join("        " + line + "\n" for line in RULES.format(i=i).splitlines())
            + f"      permissions:\n      - serviceAccountName: op{i}\n        rules:\n"
            + "".join("        " + line + "\n" for line in RULES.format(i=i).splitlines())
        )
    return (
        f"apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n"
        f"metadata:\n  name: hook-{i}\nwebhooks:\n- name: hook{i}.example.com\n"
        f"  rules:\n  - apiGroups: ['']\n    apiVersions: [v1]\n"
        f"    operations: [CREATE]\n    resources: [pods]\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=60000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--output", choices=("table", "json"), default="table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.count):
            (root / f"m{i:05d}.yaml").write_text(manifest(i))
        load_s, audit_s, total_s, cpu_s = [], [], [], []
        findings = grants = 0
        for _ in range(args.repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            manifests, errors = load_inputs([root])
            t1 = time.perf_counter()
            report = audit(manifests)
            (report_text if args.output == "table" else report_json)(report)
            t2, c2 = time.perf_counter(), time.process_time()
            cpu_s.append(c2 - c0)
            assert not errors and len(manifests) == args.count
            load_s.append(t1 - t0)
            audit_s.append(t2 - t1)
            total_s.append(t2 - t0)
            findings, grants = len(report.findings), len(report.grants)
    best, median = min(total_s), statistics.median(total_s)
    goal = 10.0 if args.count > 2000 else 2.0
    print(f"operators audit: {args.count} manifests, {findings} findings, {grants} grants")
    print(f"  load (YAML with line marks): median {statistics.median(load_s):.3f} s")
    print(f"  audit + {args.output} report:        median {statistics.median(audit_s):.3f} s")
    # CPU time too: on a shared machine the wall time says more about the neighbours
    print(f"  CPU time: median {statistics.median(cpu_s):.3f} s")
    print(
        f"  total: best {best:.3f} s, median {median:.3f} s over {args.repeat} runs "
        f"(goal < {goal:g} s: {'met' if median < goal else 'MISSED'})"
    )
    return 0 if median < goal else 1


if __name__ == "__main__":
    sys.exit(main())
