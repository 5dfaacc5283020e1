"""Applying a release: a webhook that is not yet serving is waited for; a real refusal is not."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.core.kube import KubeError
from flotilla.testenv import ko_install

CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "feature-flags-triggers", "namespace": "tekton-pipelines"},
}
NOT_SERVING = (
    'Internal error occurred: failed calling webhook "config.webhook.pipeline.tekton.dev": '
    "connect: connection refused"
)


def test_apply_waits_for_a_webhook_that_is_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def apply_raw(client: Any, document: dict[str, Any], **_: Any) -> None:
        calls.append(document["metadata"]["name"])
        if len(calls) < 3:
            raise KubeError(NOT_SERVING, 500)

    monkeypatch.setattr(ko_install, "apply_raw", apply_raw)
    monkeypatch.setattr("flotilla.testenv.ko_install.time.sleep", lambda _: None)
    ko_install.apply_documents(object(), [CONFIG_MAP])  # type: ignore[arg-type]
    assert calls == ["feature-flags-triggers"] * 3


def test_apply_fails_at_once_on_a_real_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def apply_raw(client: Any, document: dict[str, Any], **_: Any) -> None:
        calls.append(document["metadata"]["name"])
        raise KubeError('admission webhook denied the request: invalid value "x"', 400)

    monkeypatch.setattr(ko_install, "apply_raw", apply_raw)
    with pytest.raises(KubeError, match="denied the request"):
        ko_install.apply_documents(object(), [CONFIG_MAP])  # type: ignore[arg-type]
    assert len(calls) == 1
