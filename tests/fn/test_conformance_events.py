"""The CloudEvents half of the contract, the same in every runtime (the cloudevents templates)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from flotilla.cli import app

from .support import Collector, Served, parse_metrics, runtime_params, runtime_under_test, sample

CE = {"ce-id": "42", "ce-source": "/tests", "ce-type": "dev.example.ping", "ce-specversion": "1.0"}


@pytest.fixture(scope="module", params=runtime_params())
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    kind: str = request.param
    runtime = kind.removesuffix("-image")
    tmp = tmp_path_factory.mktemp(f"ce-{kind}")
    project = tmp / "events"
    result = CliRunner().invoke(
        app,
        [
            "fn",
            "init",
            "events",
            "--runtime",
            runtime,
            "--template",
            "cloudevents",
            "--dir",
            str(project),
        ],
    )
    assert result.exit_code == 0, result.output
    collector = Collector()
    try:
        with runtime_under_test(kind, collector, tmp, request, project) as s:
            yield s
    finally:
        collector.close()


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=10) as client:
        yield client


def test_binary_mode_in_binary_mode_out(http: httpx.Client) -> None:
    r = http.post("/", json={"n": 1}, headers=CE)
    assert r.status_code == 200
    assert r.headers["ce-type"] == "dev.flotilla.events.reply"
    assert r.headers["ce-source"] == "/functions/events"
    assert r.headers["ce-specversion"] == "1.0" and r.headers["ce-id"]
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"received": {"n": 1}}


def test_structured_mode_in(http: httpx.Client) -> None:
    doc = {
        "specversion": "1.0",
        "id": "7",
        "source": "/s",
        "type": "t",
        "data": {"x": [1]},
        "datacontenttype": "application/json",
    }
    r = http.post(
        "/",
        content=json.dumps(doc).encode(),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert (r.status_code, r.json()) == (200, {"received": {"x": [1]}})


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b"{}"),
        ({**CE, "ce-specversion": "0.3"}, b"{}"),
        ({**CE, "content-type": "application/json"}, b"{not json"),
        ({"content-type": "application/cloudevents+json"}, b"[1, 2]"),
        ({"content-type": "application/cloudevents+json"}, b"\xff\xfe"),
    ],
)
def test_what_is_not_a_cloudevent_gets_400_with_the_reason(
    http: httpx.Client, headers: dict[str, str], body: bytes
) -> None:
    r = http.post("/", content=body, headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]


def test_events_are_counted_with_the_pubsub_trigger(http: httpx.Client, served: Served) -> None:
    http.post("/", json={}, headers=CE)
    metrics = parse_metrics(http.get("/metrics").text)
    assert sample(metrics, "faas_invocations_total", faas_trigger="pubsub") >= 1
    assert sample(metrics, "faas_invocations_total", faas_trigger="http") == 0
