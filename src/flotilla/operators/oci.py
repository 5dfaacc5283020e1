"""Bundle images: pull one from an OCI registry and unpack it (building one: :mod:`bundle_image`).

Registry v2 over HTTP(S) with httpx, no docker. A bundle image (``opm``/``operator-sdk bundle``)
is ``FROM scratch`` with ``manifests/`` and ``metadata/`` copied in and the
``operators.operatorframework.io.bundle.*`` labels, the same keys as ``metadata/annotations.yaml``.

Registry content is untrusted: manifests and layers are bounded in size (declared and actual),
every blob's digest is checked, media types must be an image's, and a tar entry may only be a
regular file or directory inside ``manifests/`` or ``metadata/``: links, devices, absolute paths
and ``..`` are refused with a message naming the entry. Credentials come from the auth files
podman, skopeo and docker write (``registryauth``), for Basic auth and the bearer-token flow;
loopback registries are spoken to over plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import posixpath
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from flotilla.operators.documents import Bundle
from flotilla.operators.models import OperatorsError
from flotilla.operators.registryauth import Credentials, CredentialsError, find_credentials

__all__ = [
    "BUNDLE_LABELS",
    "ImageError",
    "ImageRef",
    "Registry",
    "pull_bundle",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
_INDEXES = (OCI_INDEX, DOCKER_LIST)
_CONFIGS = (OCI_CONFIG, DOCKER_CONFIG)
_LAYERS = (OCI_LAYER, OCI_LAYER_GZIP, DOCKER_LAYER_GZIP)

MAX_MANIFEST_BYTES = 4 * 2**20
MAX_CONFIG_BYTES = 4 * 2**20
MAX_LAYER_BYTES = 32 * 2**20
"""Compressed, per layer: a bundle is YAML; the largest community bundles are a few MiB."""
MAX_UNPACKED_BYTES = 64 * 2**20
MAX_ENTRIES = 10_000
MAX_LAYERS = 16

LABEL = "operators.operatorframework.io.bundle"
BUNDLE_LABELS = {
    f"{LABEL}.mediatype.v1": "registry+v1",
    f"{LABEL}.manifests.v1": "manifests/",
    f"{LABEL}.metadata.v1": "metadata/",
}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPO = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")


class ImageError(OperatorsError):
    """A bundle image cannot be pulled, read or pushed; the message names the image and why."""


@dataclass(frozen=True)
class ImageRef:
    """``host[:port]/repository[:tag][@sha256:...]`` (docker.io and ``library/`` implied)."""

    host: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        rest = text.strip()
        digest = ""
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST.fullmatch(digest):
                raise ImageError(f"{text}: digest must be sha256:<64 hex digits>")
        first, _, path = rest.partition("/")
        if path and ("." in first or ":" in first or first == "localhost"):
            host = first
        else:
            host, path = "docker.io", rest if "/" in rest else f"library/{rest}"
        tag = ""
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, tag = path.rsplit(":", 1)
            if not _TAG.fullmatch(tag):
                raise ImageError(f"{text}: bad tag {tag!r}")
        if not _REPO.fullmatch(path):
            raise ImageError(f"{text}: not an image reference (host/repository[:tag][@digest])")
        if not tag and not digest:
            tag = "latest"
        return cls(host, path, tag, digest)

    @property
    def reference(self) -> str:
        """What the manifest is fetched by: the digest when given (it pins the content)."""
        return self.digest or self.tag

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.host}/{self.repository}{tag}{digest}"


def _plain_http(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "127.0.0.1", "[::1]")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="repository:a:pull,push"`` -> scheme, params
    (a quoted value may hold commas, as a scope of several actions does)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m[1].lower(): m[2] if m[2] is not None else m[3] for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


class Registry:
    """A minimal distribution-spec client for one repository.

    Authentication as the distribution spec has it: a request answered 401 is sent again with
    what its ``WWW-Authenticate`` asks for: ``Basic`` credentials, or a ``Bearer`` token from
    the realm (GET with ``service`` and ``scope``, logged in with Basic auth when there are
    credentials, anonymous otherwise; an identity token is exchanged by the OAuth2 POST). Tokens
    are kept per scope, since a push needs ``pull,push`` after a pull-only check. Credentials are
    looked up once, on the first 401 (``registryauth``); they are sent over plain HTTP only to
    loopback, and never to another host than the registry's or its token realm.
    """

    def __init__(self, ref: ImageRef) -> None:
        self.ref = ref
        host = "registry-1.docker.io" if ref.host == "docker.io" else ref.host
        scheme = "http" if _plain_http(host) else "https"
        self.base = f"{scheme}://{host}/v2/{ref.repository}"
        self.client = httpx.Client(timeout=60, follow_redirects=True)
        self.authorization: str | None = None
        self.tokens: dict[str, str] = {}
        self._credentials: Credentials | None = None
        self._looked_up = False

    def close(self) -> None:
        self.client.close()

    def credentials(self) -> Credentials | None:
        if not self._looked_up:
            self._looked_up = True
            try:
                self._credentials = find_credentials(self.ref.host, self.ref.repository)
            except CredentialsError as exc:
                raise ImageError(f"{self.ref}: {exc}") from None
        return self._credentials

    @contextmanager
    def _stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        headers = dict(kwargs.pop("headers", {}))
        for attempt in (0, 1):
            if self.authorization:
                headers["Authorization"] = self.authorization
            try:
                with self.client.stream(method, url, headers=headers, **kwargs) as response:
                    if response.status_code == 401:
                        if attempt == 0:
                            challenge = response.headers.get("www-authenticate", "")
                            wanted = self._authorize(challenge)
                            if wanted and wanted != headers.get("Authorization"):
                                self.authorization = wanted
                                continue
                        raise self._unauthorized()
                    yield response
                    return
            except httpx.HTTPError as exc:
                raise ImageError(f"{self.ref}: {exc}") from exc

    def _unauthorized(self) -> ImageError:
        creds = self._credentials
        if creds is None:
            return ImageError(
                f"{self.ref}: the registry asks for credentials and none were found for "
                f"{self.ref.host} (log in with podman, skopeo or docker, or set REGISTRY_AUTH_FILE)"
            )
        return ImageError(f"{self.ref}: the registry refused the credentials from {creds.origin}")

    def _authorize(self, header: str) -> str | None:
        """The Authorization value the challenge asks for, or None when we have nothing."""
        scheme, params = _challenge(header)
        if scheme == "basic":
            creds = self.credentials()
            if creds is None or not (creds.username or creds.password):
                return None
            pair = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if scheme != "bearer":
            return None
        scope = params.get("scope", "")
        token = self.tokens.get(scope) or self._token(params)
        if token:
            self.tokens[scope] = token
        return f"Bearer {token}" if token else None

    def _token(self, params: dict[str, str]) -> str | None:
        realm = params.get("realm", "")
        parsed = httpx.URL(realm) if realm.startswith(("https://", "http://")) else None
        if parsed is None:
            return None
        loopback = _plain_http(parsed.netloc.decode()) and self.base.startswith("http://")
        if parsed.scheme == "http" and not loopback:  # plain HTTP only between loopback ends
            raise ImageError(f"{self.ref}: the token realm {realm} is not HTTPS; refusing it")
        query = {k: v for k, v in params.items() if k in ("service", "scope") and v}
        creds = self.credentials()
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "client_id": "flotilla",
                    **query,
                }
                response = self.client.post(realm, data=form, follow_redirects=False)
            elif creds is not None and (creds.username or creds.password):
                auth = (creds.username, creds.password)
                response = self.client.get(realm, params=query, auth=auth, follow_redirects=False)
            else:
                response = self.client.get(realm, params=query, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise ImageError(f"{self.ref}: token request to {parsed.host} failed: {exc}") from None
        if response.status_code in (401, 403):
            raise self._unauthorized()
        try:
            body = response.json() if response.is_success else {}
        except ValueError:
            body = {}
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        return str(token) if token else None

    def _read(self, response: httpx.Response, limit: int, what: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ImageError(f"{self.ref}: {what} is {int(declared)} bytes, over {limit}")
        buf = bytearray()
        for chunk in response.iter_bytes():
            buf.extend(chunk)
            if len(buf) > limit:
                raise ImageError(f"{self.ref}: {what} is over {limit} bytes")
        return bytes(buf)

    def _fail(self, response: httpx.Response, what: str) -> ImageError:
        response.read()
        text = response.text[:300].strip().replace("\n", " ")
        return ImageError(f"{self.ref}: {what}: HTTP {response.status_code} {text}")

    def manifest(self, reference: str) -> tuple[str, bytes]:
        accept = ", ".join((*_MANIFESTS, *_INDEXES))
        with self._stream(
            "GET", f"{self.base}/manifests/{reference}", headers={"Accept": accept}
        ) as response:
            if not response.is_success:
                raise self._fail(response, f"fetching manifest {reference}")
            kind = response.headers.get("content-type", "").split(";")[0].strip()
            body = self._read(response, MAX_MANIFEST_BYTES, "the manifest")
        if reference.startswith("sha256:") and sha256_digest(body) != reference:
            raise ImageError(
                f"{self.ref}: manifest digest is {sha256_digest(body)}, not {reference}"
            )
        return kind, body

    def blob(self, descriptor: dict[str, Any], limit: int, what: str) -> bytes:
        digest = str(descriptor.get("digest") or "")
        if not _DIGEST.fullmatch(digest):
            raise ImageError(f"{self.ref}: {what} has no sha256 digest ({digest[:80]!r})")
        size = descriptor.get("size")
        if isinstance(size, int) and size > limit:
            raise ImageError(f"{self.ref}: {what} {digest} is {size} bytes, over {limit}")
        with self._stream("GET", f"{self.base}/blobs/{digest}") as response:
            if not response.is_success:
                raise self._fail(response, f"fetching {what} {digest}")
            data = self._read(response, limit, f"{what} {digest}")
        if sha256_digest(data) != digest:
            raise ImageError(f"{self.ref}: {what} digest is {sha256_digest(data)}, not {digest}")
        return data

    def push_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        with self._stream("HEAD", f"{self.base}/blobs/{digest}") as head:
            if head.status_code == 200:
                return digest
        with self._stream("POST", f"{self.base}/blobs/uploads/") as start:
            if start.status_code not in (201, 202):
                raise self._fail(start, "starting a blob upload")
            location = start.headers.get("location", "")
        if location.startswith("/"):
            location = self.base.split("/v2/", 1)[0] + location
        separator = "&" if "?" in location else "?"
        with self._stream(
            "PUT",
            f"{location}{separator}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        ) as done:
            if done.status_code != 201:
                raise self._fail(done, f"uploading {digest}")
        return digest

    def push_manifest(self, tag: str, body: bytes, media_type: str) -> None:
        with self._stream(
            "PUT",
            f"{self.base}/manifests/{tag}",
            content=body,
            headers={"Content-Type": media_type},
        ) as response:
            if response.status_code != 201:
                raise self._fail(response, f"pushing the manifest as {tag}")


def _json(data: bytes, what: str, ref: ImageRef) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"{ref}: {what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImageError(f"{ref}: {what} is not a JSON object")
    return value


def _image_manifest(registry: Registry) -> dict[str, Any]:
    """The image manifest, through an index (linux/amd64, else the first image) if need be."""
    ref = registry.ref
    kind, body = registry.manifest(ref.reference)
    doc = _json(body, "the manifest", ref)
    kind = kind or str(doc.get("mediaType") or "")
    if kind in _INDEXES or doc.get("mediaType") in _INDEXES:
        entries = [m for m in doc.get("manifests") or [] if isinstance(m, dict)]
        if not entries:
            raise ImageError(f"{ref}: image index lists no manifests")
        pick = next(
            (
                m
                for m in entries
                if (m.get("platform") or {}).get("os") == "linux"
                and (m.get("platform") or {}).get("architecture") == "amd64"
            ),
            entries[0],
        )
        digest = str(pick.get("digest") or "")
        if not _DIGEST.fullmatch(digest):
            raise ImageError(f"{ref}: image index entry has no sha256 digest")
        kind, body = registry.manifest(digest)
        doc = _json(body, "the manifest", ref)
        kind = kind or str(doc.get("mediaType") or "")
    if kind not in _MANIFESTS and doc.get("mediaType") not in _MANIFESTS:
        raise ImageError(
            f"{ref}: not an image (manifest media type {kind or doc.get('mediaType')!r}; "
            f"expected {OCI_MANIFEST} or {DOCKER_MANIFEST})"
        )
    return doc


def _safe_name(name: str, ref: ImageRef) -> str:
    """The entry's path inside the image, or an error for one that would leave it."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        raise ImageError(f"{ref}: tar entry {name[:200]!r} has an absolute or odd path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"{ref}: tar entry {name[:200]!r} leaves the image (..)")
    return posixpath.join(*parts) if parts else ""


def _layer_tar(data: bytes, media_type: str, ref: ImageRef) -> tarfile.TarFile:
    if media_type.endswith("gzip"):
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = decompressor.decompress(data, MAX_UNPACKED_BYTES + 1)
        except zlib.error as exc:
            raise ImageError(f"{ref}: layer is not gzip: {exc}") from None
        if len(data) > MAX_UNPACKED_BYTES or decompressor.unconsumed_tail:
            raise ImageError(f"{ref}: layer unpacks to over {MAX_UNPACKED_BYTES} bytes")
    try:
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except tarfile.TarError as exc:
        raise ImageError(f"{ref}: layer is not a tar archive: {exc}") from None


def _unpack(
    layer: tarfile.TarFile, dest: Path, roots: tuple[str, ...], ref: ImageRef, budget: list[int]
) -> None:
    """Extract the regular files under ``roots`` into ``dest``; refuse what could escape."""
    try:
        members = layer.getmembers()
    except tarfile.TarError as exc:
        raise ImageError(f"{ref}: layer is not a tar archive: {exc}") from None
    for member in members:
        budget[1] += 1
        if budget[1] > MAX_ENTRIES:
            raise ImageError(f"{ref}: over {MAX_ENTRIES} tar entries")
        name = _safe_name(member.name, ref)
        base = posixpath.basename(name)
        if base.startswith(".wh."):  # a whiteout: delete what a lower layer had
            target = dest / posixpath.dirname(name) / base.removeprefix(".wh.")
            if target.is_file():
                target.unlink()
            continue
        inside = any(name == r or name.startswith(r + "/") for r in roots)
        if member.isdir() or not inside:
            continue
        if not member.isreg():
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise ImageError(f"{ref}: tar entry {name!r} is a {kind}; bundles hold plain files")
        budget[0] += member.size
        if budget[0] > MAX_UNPACKED_BYTES:
            raise ImageError(f"{ref}: bundle unpacks to over {MAX_UNPACKED_BYTES} bytes")
        source = layer.extractfile(member)
        if source is None:
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read())


def _roots(labels: dict[str, str]) -> tuple[str, ...]:
    roots = []
    for key, default in (
        (f"{LABEL}.manifests.v1", "manifests"),
        (f"{LABEL}.metadata.v1", "metadata"),
    ):
        root = _safe_name(str(labels.get(key) or default), ImageRef("", "x")).strip("/")
        roots.append(root or default)
    return tuple(roots)


def pull_bundle(image: str) -> Bundle:
    """Pull ``image``, unpack its ``manifests/`` and ``metadata/``, and read it as a bundle.

    Findings point at ``IMAGE/manifests/FILE:LINE``; nothing stays on disk afterwards.
    """
    from flotilla.operators.loading import load_bundle

    ref = ImageRef.parse(image)
    registry = Registry(ref)
    try:
        manifest = _image_manifest(registry)
        found = manifest.get("config")
        config_desc: dict[str, Any] = found if isinstance(found, dict) else {}
        if config_desc.get("mediaType") not in _CONFIGS:
            raise ImageError(
                f"{ref}: config media type {config_desc.get('mediaType')!r} is not an image "
                "config (a Helm chart or other artifact, not a bundle image)"
            )
        config = _json(registry.blob(config_desc, MAX_CONFIG_BYTES, "config"), "config", ref)
        labels = (config.get("config") or {}).get("Labels") or {}
        labels = labels if isinstance(labels, dict) else {}
        if labels.get(f"{LABEL}.mediatype.v1", "registry+v1") != "registry+v1":
            raise ImageError(
                f"{ref}: bundle media type {labels[f'{LABEL}.mediatype.v1']!r} is not registry+v1"
            )
        layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
        if not layers or len(layers) > MAX_LAYERS:
            raise ImageError(f"{ref}: {len(layers)} layers (a bundle has 1 to {MAX_LAYERS})")
        roots = _roots(labels)
        budget = [0, 0]
        with tempfile.TemporaryDirectory(prefix="flotilla-bundle-") as tmp:
            dest = Path(tmp)
            for desc in layers:
                media = str(desc.get("mediaType") or "")
                if media not in _LAYERS:
                    raise ImageError(f"{ref}: layer media type {media!r} is not a tar layer")
                data = registry.blob(desc, MAX_LAYER_BYTES, "layer")
                with _layer_tar(data, media, ref) as layer:
                    _unpack(layer, dest, roots, ref, budget)
            if not (dest / roots[0]).is_dir():
                raise ImageError(f"{ref}: no {roots[0]}/ directory: not a bundle image")
            if not (dest / roots[1] / "annotations.yaml").is_file():
                (dest / roots[1]).mkdir(parents=True, exist_ok=True)
                annotations = {k: v for k, v in labels.items() if k.startswith(LABEL)}
                (dest / roots[1] / "annotations.yaml").write_text(
                    json.dumps({"annotations": annotations})
                )
            bundle = load_bundle(dest)
        prefix = str(dest)
        manifests = [
            replace(m, source=replace(m.source, file=str(ref) + m.source.file[len(prefix) :]))
            if m.source.file.startswith(prefix)
            else m
            for m in bundle.manifests
        ]
        problems = [
            replace(p, source=replace(p.source, file=str(ref) + p.source.file[len(prefix) :]))
            if p.source.file.startswith(prefix)
            else p
            for p in bundle.problems or []
        ]
        return replace(
            bundle,
            path=Path(str(ref)),
            manifests=[replace(m, origin=str(ref)) for m in manifests],
            problems=problems,
        )
    finally:
        registry.close()
