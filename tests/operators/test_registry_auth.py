"""Registry credentials: where they are found, and pushes/pulls against registries that want them.

Two loopback Debian docker-registry processes: one with htpasswd Basic auth, one with the
token flow, whose token server (RS256 JWTs with the signing certificate in ``x5c``, as the
registry's ``auth.token`` verifies them) is written here.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from flotilla.operators.bundle_image import push_bundle
from flotilla.operators.oci import (
    ImageError,
    ImageRef,
    Registry,
    _challenge,
    pull_bundle,
)
from flotilla.operators.registryauth import (
    CredentialsError,
    auth_files,
    find_credentials,
)
from tests.conftest import loopback_registry
from tests.operators.helpers import BUNDLES

ETCD = BUNDLES / "etcd-0.9.2"
USER, PASSWORD = "ci-user", "s3cret-Pa55"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _docker_config(directory: Path, auths: dict[str, Any], **extra: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps({"auths": auths, **extra}))
    return path


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), **values}


def test_auth_files_are_looked_up_in_podmans_then_dockers_order(tmp_path: Path) -> None:
    env = _env(tmp_path, XDG_RUNTIME_DIR="/run/user/1", DOCKER_CONFIG="/d")
    assert auth_files(env) == [
        Path("/run/user/1/containers/auth.json"),
        tmp_path / "home/.config/containers/auth.json",
        Path("/d/config.json"),
    ]
    env = _env(tmp_path, REGISTRY_AUTH_FILE="/a.json", XDG_RUNTIME_DIR="/run/user/1")
    assert auth_files(env)[0] == Path("/a.json")


def test_docker_config_entries_match_as_containers_image_matches_them(tmp_path: Path) -> None:
    _docker_config(
        tmp_path / "home/.docker",
        {
            "https://index.docker.io/v1/": {"auth": _b64("hub:hubpw")},
            "quay.io": {"auth": _b64("quay:pw:with:colons")},
            "quay.io/org/private": {"username": "narrow", "password": "npw"},
            "http://127.0.0.1:5000/v2/": {"identitytoken": "refresh-me"},
            "ghcr.io": {},
        },
    )
    env = _env(tmp_path)
    hub = find_credentials("docker.io", "library/busybox", env)
    assert hub is not None and (hub.username, hub.password) == ("hub", "hubpw")
    quay = find_credentials("quay.io", "org/other", env)
    assert quay is not None and (quay.username, quay.password) == ("quay", "pw:with:colons")
    narrow = find_credentials("quay.io", "org/private/sub", env)  # the repository key wins
    assert narrow is not None and narrow.username == "narrow"
    local = find_credentials("127.0.0.1:5000", "b", env)
    assert local is not None and local.identity_token == "refresh-me"
    assert find_credentials("ghcr.io", "x/y", env) is None  # {}: a credsStore's placeholder
    assert find_credentials("example.com", "x", env) is None
    assert "hubpw" not in repr(hub) and "hub" in repr(hub)


def test_registry_auth_file_comes_before_the_docker_config(tmp_path: Path) -> None:
    _docker_config(tmp_path / "home/.docker", {"quay.io": {"auth": _b64("docker:1")}})
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"quay.io": {"auth": _b64("podman:2")}}}))
    found = find_credentials("quay.io", "o/b", _env(tmp_path, REGISTRY_AUTH_FILE=str(auth)))
    assert found is not None and found.username == "podman" and str(auth) in found.origin
    other = find_credentials("docker.io", "library/x", _env(tmp_path, REGISTRY_AUTH_FILE=str(auth)))
    assert other is None


def test_bad_auth_files_name_the_file_never_the_secret(tmp_path: Path) -> None:
    path = _docker_config(tmp_path / "d", {"quay.io": {"auth": "not base64 hunter2!"}})
    with pytest.raises(CredentialsError) as err:
        find_credentials("quay.io", "o/b", _env(tmp_path, DOCKER_CONFIG=str(tmp_path / "d")))
    assert str(path) in str(err.value) and "hunter2" not in str(err.value)
    path.write_text('{"auths": {"quay.io": {"auth": "hunter2"')
    with pytest.raises(CredentialsError, match="not a JSON auth file") as err:
        find_credentials("quay.io", "o/b", _env(tmp_path, DOCKER_CONFIG=str(tmp_path / "d")))
    assert "hunter2" not in str(err.value)


def test_credential_helpers_get_the_server_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\n"
        f'echo "$*" > {seen}.argv\ncat > {seen}\n'
        'echo \'{"ServerURL": "quay.io", "Username": "helped", "Secret": "from-helper"}\'\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    _docker_config(tmp_path / "d", {"quay.io": {}}, credHelpers={"quay.io": "fake"})
    found = find_credentials("quay.io", "o/b", _env(tmp_path, DOCKER_CONFIG=str(tmp_path / "d")))
    assert found is not None and (found.username, found.password) == ("helped", "from-helper")
    assert seen.read_text() == "quay.io" and Path(f"{seen}.argv").read_text().strip() == "get"
    # a store whose helper is not installed means no credentials, as docker treats it
    _docker_config(tmp_path / "d", {"quay.io": {}}, credsStore="missing")
    assert (
        find_credentials("quay.io", "o/b", _env(tmp_path, DOCKER_CONFIG=str(tmp_path / "d")))
        is None
    )


def test_challenges_keep_quoted_commas() -> None:
    scheme, params = _challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    assert _challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


def test_a_remote_registry_cannot_send_credentials_to_a_plain_http_realm() -> None:
    registry = Registry(ImageRef.parse("quay.io/org/bundle:v1"))
    try:
        for realm in ("http://127.0.0.1:9/token", "http://auth.example/token"):
            with pytest.raises(ImageError, match="is not HTTPS; refusing it"):
                registry._token({"realm": realm, "service": "quay.io"})
    finally:
        registry.close()


# --- against real registries ---------------------------------------------------------------


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[str]:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    auth = f"auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {htpasswd}\n"
    yield from loopback_registry(tmp_path / "basic", auth)


def _use_docker_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str, password: str
) -> None:
    directory = tmp_path / f"docker-{password[:4]}"
    _docker_config(directory, {host: {"auth": _b64(f"{USER}:{password}")}})
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.mark.slow
def test_basic_auth_registry_push_and_pull_with_docker_config(
    basic_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = f"{basic_registry}/bundles/etcd:v0.9.2"
    _use_docker_config(monkeypatch, tmp_path, "nobody.example", PASSWORD)
    with pytest.raises(ImageError, match="asks for credentials and none were found"):
        push_bundle(ETCD, image)
    _use_docker_config(monkeypatch, tmp_path, basic_registry, "wrong-password")
    with pytest.raises(ImageError, match="refused the credentials from") as err:
        push_bundle(ETCD, image)
    assert "wrong-password" not in str(err.value)
    _use_docker_config(monkeypatch, tmp_path, basic_registry, PASSWORD)
    digest = push_bundle(ETCD, image)
    bundle = pull_bundle(f"{basic_registry}/bundles/etcd@{digest}")
    assert bundle.package == "etcd" and bundle.csv is not None
    _use_docker_config(monkeypatch, tmp_path, basic_registry, "stale-password")
    with pytest.raises(ImageError, match="refused the credentials from") as err:
        pull_bundle(f"{basic_registry}/bundles/etcd@{digest}")
    assert "stale-password" not in str(err.value)


# --- the bearer-token flow --------------------------------------------------------------------

SERVICE, ISSUER = "flotilla-test-registry", "flotilla-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _TokenServer:
    """Issues registry tokens for USER/PASSWORD (Basic auth on the token request) with the
    actions asked for; records each scope asked, and refuses anyone else with 401."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    scopes: list[str] = field(default_factory=list)

    def token(self, scope: str) -> str:
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        access = []
        if scope:
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 30,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)


def _self_signed() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flotilla test token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[str, _TokenServer]]:
    key, cert = _self_signed()
    server_state = _TokenServer(key, cert)
    expected = "Basic " + _b64(f"{USER}:{PASSWORD}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            scope = (query.get("scope") or [""])[0]
            server_state.scopes.append(scope)
            body = json.dumps({"token": server_state.token(scope), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    bundle = tmp_path / "root.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    realm = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    auth = (
        f"auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n"
        f"    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n"
    )
    try:
        for address in loopback_registry(tmp_path / "token", auth):
            yield address, server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_bearer_token_flow_with_credentials_from_registry_auth_file(
    token_registry: tuple[str, _TokenServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, tokens = token_registry
    auth = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    image = f"{address}/bundles/etcd:v0.9.2"
    auth.write_text(json.dumps({"auths": {address: {"auth": _b64(f"{USER}:bad-guess")}}}))
    with pytest.raises(ImageError, match="refused the credentials from") as err:
        push_bundle(ETCD, image)
    assert "bad-guess" not in str(err.value)
    auth.write_text(json.dumps({"auths": {address: {"auth": _b64(f"{USER}:{PASSWORD}")}}}))
    digest = push_bundle(ETCD, image)
    # the push asked for push (the registry lists the actions in either order)
    actions = [set(scope.rsplit(":", 1)[-1].split(",")) for scope in tokens.scopes]
    assert {"pull", "push"} in actions
    bundle = pull_bundle(f"{address}/bundles/etcd@{digest}")
    assert bundle.package == "etcd" and bundle.csv is not None
    assert tokens.scopes[-1] == "repository:bundles/etcd:pull"
