"""function.yaml: what is accepted, what is refused and how it says so."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla.fn.model import (
    FunctionSpec,
    FunctionSpecError,
    Runtime,
    Signature,
    Target,
    dump_spec,
    load_spec,
    parse_spec,
)


def test_minimal_spec_gets_defaults() -> None:
    spec = load_spec("name: hello\nruntime: python\n")
    assert spec.handler_ref == "func:handle"
    assert spec.image_ref == "flotilla.local/hello:latest"
    assert spec.signature is Signature.HTTP
    assert spec.deploy.target is Target.KUBERNETES
    assert (spec.scale.min, spec.scale.max, spec.scale.metric) == (0, 10, "concurrency")
    assert load_spec("name: h\nruntime: node\n").handler_ref == "index.js:handle"


def test_full_spec() -> None:
    spec = load_spec("""
name: resize
runtime: node
signature: cloudevent
handler: src/main.js:onEvent
image: 127.0.0.1:5000/resize:v2
env: {LEVEL: debug, RETRIES: "3"}
scale: {min: 1, max: 5, target: 20, metric: rps, utilization: 80}
deploy:
  target: knative
  namespace: media
  nodeSelector: {flotilla.dev/real-node: "true"}
  resources: {requests: {cpu: 100m}, limits: {memory: 128Mi}}
  labels: {team: media}
""")
    assert spec.runtime is Runtime.NODE and spec.signature is Signature.CLOUDEVENT
    assert spec.env == {"LEVEL": "debug", "RETRIES": "3"}
    assert spec.scale.metric == "rps" and spec.scale.min == 1
    assert spec.deploy.node_selector == {"flotilla.dev/real-node": "true"}
    assert spec.deploy.requests == {"cpu": "100m"}
    assert spec.deploy.limits == {"memory": "128Mi"}


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    with pytest.raises(FunctionSpecError) as info:
        load_spec("""
name: Bad_Name
runtime: ruby
signature: carrier-pigeon
imgae: typo
env: {"1BAD": x, PORT: "9", OK: [1]}
scale: {min: 5, max: 2, target: "lots", metric: vibes}
deploy: {target: lambda, port: 80, resources: {requests: {gpu: "1"}}}
""")
    problems = "\n".join(info.value.problems)
    for fragment in (
        "name:",
        "runtime:",
        "signature:",
        "imgae: unknown key",
        "env.1BAD",
        "env.PORT: is set by the runtime",
        "env.OK: must be a string",
        "scale.target: must be an integer",
        "scale.metric",
        "deploy.target",
        "deploy.port: must be between",
        "deploy.resources.requests.gpu",
    ):
        assert fragment in problems, fragment
    assert len(info.value.problems) >= 12


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "just a string",
        "name: [1, 2]\nruntime: python",
        "{{{",
        "name: x\nruntime: python\nscale: 7",
        "name: x\nruntime: python\nscale: {min: true}",
        "name: x\nruntime: node\nsignature: asgi",
        "name: x\nruntime: python\nhandler: 'os:system; rm'",
        "name: x\nruntime: node\nhandler: ../../etc/passwd",
        "name: x\nruntime: python\nimage: '--privileged'",
        "name: " + "a" * 64 + "\nruntime: python",
        "name: x\nruntime: python\ndeploy: {labels: {a: 'not a valid value!'}}",
    ],
)
def test_hostile_or_malformed_input_is_refused_cleanly(text: str) -> None:
    with pytest.raises(FunctionSpecError):
        load_spec(text)


def test_yaml_tags_cannot_construct_objects() -> None:
    with pytest.raises(FunctionSpecError):
        load_spec("name: !!python/object/apply:os.system ['true']\nruntime: python\n")


@given(
    name=st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    runtime=st.sampled_from(list(Runtime)),
    env=st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=20), max_size=4
    ),
    low=st.integers(0, 5),
    span=st.integers(0, 20),
)
def test_dump_then_load_is_identity(
    name: str, runtime: Runtime, env: dict[str, str], low: int, span: int
) -> None:
    env = {k: v for k, v in env.items() if k not in ("PORT", "NODE_PATH", "PYTHONPATH")}
    spec = parse_spec(
        {
            "name": name,
            "runtime": runtime.value,
            "env": env,
            "scale": {"min": low, "max": max(1, low + span)},
        }
    )
    again = load_spec(dump_spec(spec))
    assert again == FunctionSpec(
        **{**spec.__dict__, "handler": spec.handler_ref, "image": spec.image_ref}
    )
