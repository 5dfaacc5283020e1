"""The shared private registry answers the OCI distribution API (push a blob, read it back)."""

import hashlib

import httpx


def test_oci_registry_accepts_and_serves_a_blob(oci_registry: str) -> None:
    body = b"flotilla"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    start = httpx.post(f"http://{oci_registry}/v2/probe/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["location"]
    url = location if location.startswith("http") else f"http://{oci_registry}{location}"
    separator = "&" if "?" in url else "?"
    put = httpx.put(f"{url}{separator}digest={digest}", content=body)
    assert put.status_code == 201
    assert httpx.get(f"http://{oci_registry}/v2/probe/blobs/{digest}").content == body
