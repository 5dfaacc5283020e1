"""Helm charts in OCI registries: push an archive as helm does, pull one by reference.

The artifact is what ``helm push`` stores (helm's pkg/registry): a config blob of media type
``application/vnd.cncf.helm.config.v1+json`` holding the chart metadata as JSON, one layer
``application/vnd.cncf.helm.chart.content.v1.tar+gzip`` holding the archive, an OCI image
manifest tagged with the version (``+`` written as ``_``). Anonymous registries and the bearer
token flow without credentials are supported; loopback registries are spoken to over plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx

from flotilla.charts.errors import ChartError

CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
LEGACY_CHART_MEDIA_TYPE = "application/tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
MAX_BLOB_BYTES = 100 * 2**20
MAX_MANIFEST_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Reference:
    """``oci://HOST[:PORT]/PATH``, the repository a chart name is appended to."""

    host: str
    path: str

    @classmethod
    def parse(cls, text: str) -> Reference:
        if not text.startswith("oci://"):
            raise ChartError(f"{text}: an OCI reference starts with oci://")
        host, _, path = text.removeprefix("oci://").partition("/")
        if not host or ".." in path.split("/"):
            raise ChartError(f"{text}: not an OCI reference (oci://HOST/PATH)")
        return cls(host, path.strip("/"))

    def repository(self, chart: str) -> str:
        return f"{self.path}/{chart}" if self.path else chart


def tag_of(version: str) -> str:
    """OCI tags cannot hold ``+``; helm writes ``_`` instead."""
    return version.replace("+", "_")


def _plain_http(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "127.0.0.1", "[::1]")


class Registry:
    """A minimal OCI distribution client for one registry host."""

    def __init__(self, host: str, plain_http: bool | None = None) -> None:
        plain = plain_http if plain_http is not None else _plain_http(host)
        scheme = "http" if plain else "https"
        self.base = f"{scheme}://{host}"
        self.client = httpx.Client(timeout=60, follow_redirects=True)
        self.token: str | None = None

    def close(self) -> None:
        self.client.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.client.request(method, url, headers=headers, **kwargs)
            if response.status_code == 401 and not self.token:
                self.token = self._anonymous_token(response.headers.get("www-authenticate", ""))
                if self.token:
                    headers["Authorization"] = f"Bearer {self.token}"
                    response = self.client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as e:
            raise ChartError(f"{url}: {e}") from e
        return response

    def _anonymous_token(self, challenge: str) -> str | None:
        if not challenge.lower().startswith("bearer "):
            return None
        pairs = (part.split("=", 1) for part in challenge[7:].split(",") if "=" in part)
        params = {k.strip(): v.strip().strip('"') for k, v in pairs}
        realm = params.pop("realm", "")
        if not realm:
            return None
        response = self.client.get(realm, params=params)
        if not response.is_success:
            return None
        body = response.json()
        return str(body.get("token") or body.get("access_token") or "") or None

    def _check(self, response: httpx.Response, what: str) -> httpx.Response:
        if not response.is_success:
            raise ChartError(f"{what}: {response.status_code} {response.text[:500]}")
        return response

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        head = self._request("HEAD", f"{self.base}/v2/{repository}/blobs/{digest}")
        if head.status_code == 200:
            return digest
        start = self._check(
            self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/"),
            f"starting an upload to {repository}",
        )
        location = start.headers.get("location", "")
        if location.startswith("/"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        self._check(
            self._request(
                "PUT",
                f"{location}{separator}digest={digest}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            ),
            f"uploading {digest} to {repository}",
        )
        return digest

    def push_chart(
        self, repository: str, version: str, archive: bytes, meta: dict[str, Any]
    ) -> str:
        """Push like ``helm push``; returns the manifest digest."""
        config = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
        config_digest = self.push_blob(repository, config)
        layer_digest = self.push_blob(repository, archive)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {"mediaType": CHART_MEDIA_TYPE, "digest": layer_digest, "size": len(archive)}
            ],
            "annotations": {
                "org.opencontainers.image.title": str(meta.get("name", "")),
                "org.opencontainers.image.version": version,
                **(
                    {"org.opencontainers.image.description": str(meta["description"])}
                    if meta.get("description")
                    else {}
                ),
            },
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        self._check(
            self._request(
                "PUT",
                f"{self.base}/v2/{repository}/manifests/{tag_of(version)}",
                content=body,
                headers={"Content-Type": MANIFEST_MEDIA_TYPE},
            ),
            f"pushing the manifest of {repository}:{tag_of(version)}",
        )
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def tags(self, repository: str) -> list[str]:
        response = self._check(
            self._request("GET", f"{self.base}/v2/{repository}/tags/list"),
            f"listing the tags of {repository}",
        )
        tags = response.json().get("tags") or []
        return [str(t) for t in tags]

    def pull_chart(self, repository: str, tag: str) -> bytes:
        """The archive of ``repository:tag``, its digest verified against the manifest."""
        response = self._check(
            self._request(
                "GET",
                f"{self.base}/v2/{repository}/manifests/{tag}",
                headers={"Accept": MANIFEST_MEDIA_TYPE},
            ),
            f"fetching the manifest of {repository}:{tag}",
        )
        if len(response.content) > MAX_MANIFEST_BYTES:
            raise ChartError(f"{repository}:{tag}: manifest too large")
        layers = [
            layer
            for layer in response.json().get("layers", [])
            if layer.get("mediaType") in (CHART_MEDIA_TYPE, LEGACY_CHART_MEDIA_TYPE)
        ]
        if len(layers) != 1:
            raise ChartError(f"{repository}:{tag}: not a Helm chart (no chart layer)")
        digest = str(layers[0].get("digest", ""))
        if int(layers[0].get("size", 0)) > MAX_BLOB_BYTES:
            raise ChartError(f"{repository}:{tag}: chart layer too large")
        blob = self._check(
            self._request("GET", f"{self.base}/v2/{repository}/blobs/{digest}"),
            f"fetching {digest} of {repository}",
        ).content
        actual = "sha256:" + hashlib.sha256(blob).hexdigest()
        if actual != digest:
            raise ChartError(f"{repository}:{tag}: layer digest {actual} is not {digest}")
        return blob
