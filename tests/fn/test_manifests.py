"""Deployment, Service, Knative Service and Tekton objects generated from function.yaml."""

from __future__ import annotations

from typing import Any

from flotilla.fn.manifests import knative_service, kubernetes_objects, manifests_for
from flotilla.fn.model import load_spec
from flotilla.fn.pipeline import pipeline_objects

SPEC = load_spec("""
name: hello
runtime: python
env: {GREETING: hi}
scale: {min: 2, max: 7, target: 50, metric: rps, utilization: 60}
deploy:
  nodeSelector: {flotilla.dev/real-node: "true"}
  labels: {team: platform}
""")


def test_deployment_probes_hit_the_health_endpoints() -> None:
    deployment, service = kubernetes_objects(SPEC, "reg/hello:v3", "apps")
    assert deployment["metadata"]["namespace"] == "apps"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/readiness", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/liveness", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health/liveness"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "PORT": "8080",
        "FLOTILLA_FN_NAME": "hello",
        "FLOTILLA_FN_VERSION": "v3",
        "GREETING": "hi",
    }
    assert pod["nodeSelector"] == {"flotilla.dev/real-node": "true"}
    assert pod["enableServiceLinks"] is False
    assert deployment["spec"]["replicas"] == 2
    assert (
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
        == "/metrics"
    )
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert deployment["metadata"]["labels"]["team"] == "platform"


def test_scale_to_zero_still_runs_one_replica_on_plain_kubernetes() -> None:
    spec = load_spec("name: z\nruntime: node\n")
    assert kubernetes_objects(spec, "i", "d")[0]["spec"]["replicas"] == 1


def test_version_comes_from_the_tag_or_digest() -> None:
    def version(image: str) -> str:
        env = kubernetes_objects(SPEC, image, "d")[0]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
        return str(next(e["value"] for e in env if e["name"] == "FLOTILLA_FN_VERSION"))

    assert version("127.0.0.1:5000/hello") == "latest"
    assert version("127.0.0.1:5000/hello:v9") == "v9"
    assert version("reg/hello@sha256:abcdef0123456789") == "sha256:abcdef012345"


def test_knative_service_carries_the_autoscaling_annotations() -> None:
    ksvc = knative_service(SPEC, "reg/hello:v3", "apps")
    assert (ksvc["apiVersion"], ksvc["kind"]) == ("serving.knative.dev/v1", "Service")
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "2"
    assert annotations["autoscaling.knative.dev/max-scale"] == "7"
    assert annotations["autoscaling.knative.dev/target"] == "50"
    assert annotations["autoscaling.knative.dev/metric"] == "rps"
    assert annotations["autoscaling.knative.dev/target-utilization-percentage"] == "60"
    assert annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    (container,) = ksvc["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/readiness"}
    assert {e["name"] for e in container["env"]} == {"FLOTILLA_FN_NAME", "GREETING"}
    cpu = load_spec("name: c\nruntime: python\nscale: {metric: cpu}")
    assert (
        knative_service(cpu, "i", "d")["spec"]["template"]["metadata"]["annotations"][
            "autoscaling.knative.dev/class"
        ]
        == "hpa.autoscaling.knative.dev"
    )


def test_target_and_namespace_can_be_overridden() -> None:
    assert [o["kind"] for o in manifests_for(SPEC, "i")] == ["Deployment", "Service"]
    (ksvc,) = manifests_for(SPEC, "i", "other", "knative")
    assert ksvc["metadata"]["namespace"] == "other"


def test_pipeline_tasks_are_all_defined_and_wired() -> None:
    objects = pipeline_objects(SPEC, "ci", git_url="https://git.example/fn.git")
    tasks = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Task"}
    (pipeline,) = [o for o in objects if o["kind"] == "Pipeline"]
    steps = pipeline["spec"]["tasks"]
    assert [t["name"] for t in steps] == ["fetch", "build", "deploy"]
    for step in steps:
        assert step["taskRef"]["name"] in tasks  # nothing fetched through resolvers
        task_params = {p["name"] for p in tasks[step["taskRef"]["name"]]["spec"]["params"]}
        assert {p["name"] for p in step.get("params", [])} <= task_params
    assert steps[2]["runAfter"] == ["build"]
    digest = next(p for p in steps[2]["params"] if p["name"] == "digest")
    assert digest["value"] == "$(tasks.build.results.IMAGE_DIGEST)"
    params = {p["name"]: p for p in pipeline["spec"]["params"]}
    assert params["git-url"]["default"] == "https://git.example/fn.git"
    assert params["image"]["default"] == "flotilla.local/hello:latest"
    assert all(o["metadata"]["namespace"] == "ci" for o in objects)


def test_push_reference_moves_the_image_into_the_registry() -> None:
    from flotilla.fn.image import push_reference

    assert push_reference("flotilla.local/hello:v1", "127.0.0.1:5000") == "127.0.0.1:5000/hello:v1"
    assert push_reference("127.0.0.1:9/team/hello", "reg:1/") == "reg:1/team/hello:latest"
    assert push_reference("localhost/hello", "r") == "r/hello:latest"
    assert push_reference("team/hello:v2", "r") == "r/team/hello:v2"


def test_deployment_readiness_and_pod_problems() -> None:
    from flotilla.fn.deploy import deployment_ready, pod_problems

    done = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 2,
            "updatedReplicas": 1,
            "availableReplicas": 1,
            "replicas": 1,
        },
    }
    assert deployment_ready(done)
    assert not deployment_ready(None)
    assert not deployment_ready({**done, "status": {**done["status"], "observedGeneration": 1}})
    assert not deployment_ready({**done, "status": {**done["status"], "replicas": 2}})  # rolling
    pods = [
        {
            "metadata": {"name": "p"},
            "status": {
                "containerStatuses": [
                    {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}
                ],
                "conditions": [{"type": "PodScheduled", "status": "True"}],
            },
        },
        {
            "metadata": {"name": "q"},
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes"}]
            },
        },
    ]
    assert pod_problems(pods) == ["p: ImagePullBackOff: not found", "q: unschedulable: 0/3 nodes"]


def test_timeout_and_concurrency_reach_both_targets() -> None:
    spec = load_spec("name: lim\nruntime: python\ntimeout: 30\nconcurrency: 4\n")
    ksvc = knative_service(spec, "r/lim:1", "default")["spec"]["template"]["spec"]
    assert (ksvc["containerConcurrency"], ksvc["timeoutSeconds"]) == (4, 30)
    env = {e["name"]: e["value"] for e in ksvc["containers"][0]["env"]}
    assert (env["FLOTILLA_FN_TIMEOUT"], env["FLOTILLA_FN_CONCURRENCY"]) == ("30", "4")
    deployment = kubernetes_objects(spec, "r/lim:1", "default")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    denv = {e["name"]: e["value"] for e in container["env"]}
    assert denv["FLOTILLA_FN_CONCURRENCY"] == "4"
    plain = knative_service(load_spec("name: p\nruntime: node\n"), "r/p:1", "default")
    assert "containerConcurrency" not in plain["spec"]["template"]["spec"]


def test_a_push_trigger_runs_exactly_the_pushed_commit() -> None:
    from flotilla.fn.pipeline import pipeline_run
    from flotilla.fn.triggers import listener_url, trigger_objects

    run = pipeline_run(
        SPEC, "ci", params={"git-revision": "main", "image": "reg/hello:v1",
                            "build-flags": ["--insecure"]},
        workspace_claim="src",
    )  # fmt: skip
    template = {"hostNetwork": True, "nodeSelector": {"pool": "build"}}
    objects = trigger_objects(SPEC, "ci", run, pod_template=template)
    by_kind = {o["kind"]: o for o in objects}
    binding = by_kind["TriggerBinding"]["spec"]["params"]
    assert binding == [{"name": "git-revision", "value": "$(body.after)"}]
    (templated,) = by_kind["TriggerTemplate"]["spec"]["resourcetemplates"]
    run_params = {p["name"]: p["value"] for p in templated["spec"]["params"]}
    assert run_params == {
        "git-revision": "$(tt.params.git-revision)",
        "image": "reg/hello:v1",
        "build-flags": ["--insecure"],
    }
    assert templated["metadata"]["generateName"] == "hello-run-"  # Triggers needs generateName
    assert {p["name"]: p["value"] for p in run["spec"]["params"]}["git-revision"] == "main"
    listener = by_kind["EventListener"]["spec"]
    assert listener["triggers"][0]["template"] == {"ref": "hello"}
    (check,) = listener["triggers"][0]["interceptors"]  # only signed pushes start runs
    assert check["ref"] == {"name": "github", "kind": "ClusterInterceptor"}
    params = {p["name"]: p["value"] for p in check["params"]}
    assert params == {
        "secretRef": {"secretName": "hello-webhook", "secretKey": "secret"},
        "eventTypes": ["push"],
    }
    pod = listener["resources"]["kubernetesResource"]["spec"]["template"]["spec"]
    assert pod == {"nodeSelector": {"pool": "build"}}  # placement only, never hostNetwork
    assert listener["serviceAccountName"] == "hello-triggers"
    roles = {o["roleRef"]["name"] for o in objects if o["kind"].endswith("Binding")
             and "roleRef" in o}  # fmt: skip
    assert roles == {
        "tekton-triggers-eventlistener-roles",
        "tekton-triggers-eventlistener-clusterroles",
    }
    assert listener_url(SPEC, "ci") == "http://el-hello.ci.svc.cluster.local:8080"


def test_the_deployer_role_allows_only_what_fn_deploy_does() -> None:
    objects = pipeline_objects(SPEC, "ci", git_url="https://git.example/fn.git")
    (role,) = [o for o in objects if o["kind"] == "Role"]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    assert ("", "secrets", "get") not in granted and all(v != "delete" for _, _, v in granted)
    assert ("apps", "deployments", "patch") in granted
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["name"] == "hello-deployer"
    (pipeline,) = [o for o in objects if o["kind"] == "Pipeline"]
    build = next(t for t in pipeline["spec"]["tasks"] if t["name"] == "build")
    assert {"name": "build-flags", "value": ["$(params.build-flags[*])"]} in build["params"]


def test_the_build_task_runs_the_functions_tests_before_building() -> None:
    def steps(runtime: str) -> dict[str, dict[str, Any]]:
        spec = load_spec(f"name: t\nruntime: {runtime}\n")
        objects = pipeline_objects(spec, "ci", flotilla_image="flotilla.local/flotilla:1")
        (build,) = [o for o in objects if o["metadata"]["name"] == "t-build"]
        found = {s["name"]: s for s in build["spec"]["steps"]}
        assert list(found) == ["context", "test", "build-and-push"]  # the tests gate the build
        return found

    python = steps("python")["test"]
    assert (python["image"], python["command"], python["args"]) == (
        "flotilla.local/flotilla:1",
        ["flotilla"],
        ["fn", "test"],
    )
    node = steps("node")["test"]
    assert node["command"] == ["node", "--test"]
    assert str(node["image"]).startswith("flotilla.local/node:")
    (env,) = node["env"]
    # the runtime and its modules as the context step wrote them, as the image lays them out
    context = "$(workspaces.source.path)/.flotilla-build"
    assert env["value"].split(":")[:2] == [f"{context}/runtime", f"{context}/runtime-deps"]
    java = steps("java")["test"]
    assert "not run" in str(java["script"])  # said, not silently skipped
