"""Pod exec, port-forward, logs and the service proxy: the API's streaming side."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
from lightkube import Client, KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.models import User
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import connect

from flotilla.core.kube.errors import KubeError, kube_errors

# --- Pod exec, port-forward and logs -----------------------------------------------------------
# lightkube has no exec/port-forward streams: they use the API's websocket protocols directly;
# following logs goes through kubectl so the stream can be ended by ending a process.


def kubectl_binary() -> str:
    """``$FLOTILLA_KUBECTL``, ``kubectl`` on ``$PATH``, or the one ``testenv build`` made."""

    found = os.environ.get("FLOTILLA_KUBECTL") or shutil.which("kubectl")
    if found:
        return found
    hits = sorted(glob.glob(os.path.expanduser("~/.cache/flotilla/k8s/*/bin/kubectl")))
    if not hits:
        raise KubeError("kubectl not found: install it or set FLOTILLA_KUBECTL")
    return hits[-1]


def _websocket_target(kubeconfig: Path) -> tuple[str, Any, dict[str, str]]:
    """(wss:// base URL, SSL context with the client certificate, auth headers) of a kubeconfig."""

    config = KubeConfig.from_file(str(kubeconfig)).get()
    if config is None:
        raise KubeError(f"{kubeconfig}: no current context")
    user = config.user or User()
    ctx = verify_cluster(config.cluster, user, config.abs_file)
    headers = {"Authorization": f"Bearer {user.token}"} if user.token else {}
    return str(config.cluster.server).replace("https://", "wss://", 1).rstrip("/"), ctx, headers


def exec_websocket(
    kubeconfig: Path,
    namespace: str,
    pod: str,
    command: list[str],
    *,
    container: str | None = None,
    stdin: bytes | None = None,
    timeout: float = 120.0,
) -> tuple[int, bytes]:
    """Run ``command`` in a pod's container over the API's exec websocket (``v5.channel.k8s.io``).

    ``stdin`` is sent and then closed (v5 can), so ``tar -x`` sees end of input. No kubectl
    process to start: a short command costs one API round trip. Returns (exit code, stdout and
    stderr); transport failures (no such pod, API down) raise ``KubeError``.
    """

    base, ctx, headers = _websocket_target(kubeconfig)
    query = [("command", c) for c in command] + [("stdout", "true"), ("stderr", "true")]
    if stdin is not None:
        query.append(("stdin", "true"))
    if container:
        query.append(("container", container))
    url = f"{base}/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(query)}"
    out = bytearray()
    status: dict[str, Any] = {}
    try:
        with connect(
            url,
            ssl=ctx,
            subprotocols=["v5.channel.k8s.io"],  # type: ignore[list-item]
            additional_headers=headers,
            compression=None,
            max_size=None,
            open_timeout=timeout,
            close_timeout=2,
        ) as ws:
            if stdin is not None:
                for i in range(0, len(stdin), 1 << 20):
                    ws.send(b"\x00" + stdin[i : i + (1 << 20)])
                ws.send(b"\xff\x00")  # v5: close stdin
            while True:
                try:
                    msg = ws.recv(timeout=timeout)
                except TimeoutError as exc:
                    raise KubeError(
                        f"exec in {namespace}/{pod}: timed out after {timeout:.0f}s"
                    ) from exc
                if not isinstance(msg, bytes) or not msg:
                    continue
                if msg[0] in (1, 2):
                    out += msg[1:]
                elif msg[0] == 3:
                    status = json.loads(msg[1:] or b"{}")
    except ConnectionClosed:
        pass  # the server closes the stream after the status frame
    except (OSError, WebSocketException) as exc:
        raise KubeError(f"exec in {namespace}/{pod}: {exc}") from exc
    if not status or status.get("status") == "Success":
        return 0, bytes(out)
    causes = (status.get("details") or {}).get("causes") or []
    code = next((int(c["message"]) for c in causes if c.get("reason") == "ExitCode"), None)
    if code is None:
        raise KubeError(f"exec in {namespace}/{pod}: {status.get('message') or status}")
    return code, bytes(out)


class PortForward:
    """Forward ``address:local_port`` to ``remote_port`` of a pod, one API stream per connection.

    Each accepted connection opens its own port-forward websocket (``v4.channel.k8s.io``) to the
    API server, so a connection the pod refuses (a process restarting) ends only that connection,
    where ``kubectl port-forward`` would exit altogether. ``pod`` may be changed while running.
    ``close()`` stops listening and waits for the accept loop.
    """

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        pod: str,
        local_port: int,
        remote_port: int,
        *,
        address: str = "127.0.0.1",
    ) -> None:

        self._base, self._ssl, self._headers = _websocket_target(kubeconfig)
        self.namespace, self.pod, self.remote_port = namespace, pod, remote_port
        self._sock = socket.create_server((address, local_port), reuse_port=False)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._accept, name=f"forward-{local_port}", daemon=True
        )
        self._thread.start()

    def _accept(self) -> None:

        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(conn,), daemon=True, name="forward-conn"
            ).start()

    def _serve(self, conn: Any) -> None:

        url = (
            f"{self._base}/api/v1/namespaces/{self.namespace}/pods/{self.pod}/portforward"
            f"?ports={self.remote_port}"
        )
        with conn:
            try:
                ws = connect(
                    url,
                    ssl=self._ssl,
                    subprotocols=["v4.channel.k8s.io"],  # type: ignore[list-item]
                    additional_headers=self._headers,
                    compression=None,
                    max_size=None,
                    open_timeout=10,
                )
            except (OSError, WebSocketException):
                return
            with ws:

                def upstream() -> None:
                    with contextlib.suppress(OSError, WebSocketException):
                        while data := conn.recv(65536):
                            ws.send(b"\x00" + data)
                    with contextlib.suppress(OSError, WebSocketException):
                        ws.close()

                pump = threading.Thread(target=upstream, daemon=True, name="forward-up")
                pump.start()
                seen = {0: False, 1: False}
                with contextlib.suppress(OSError, WebSocketException):
                    for msg in ws:
                        if not isinstance(msg, bytes) or not msg:
                            continue
                        channel, payload = msg[0], msg[1:]
                        if channel in seen and not seen[channel]:
                            seen[channel] = True  # the first frame per channel is the port
                            continue
                        if channel == 0:
                            conn.sendall(payload)
                        elif channel == 1 and payload:
                            break
                with contextlib.suppress(OSError):
                    conn.shutdown(2)
                pump.join(5)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)


def follow_pod_logs(
    kubeconfig: Path,
    namespace: str,
    pod: str,
    *,
    container: str | None = None,
    since_seconds: int | None = None,
) -> Any:
    """Start ``kubectl logs -f`` for a pod's container; returns the process (stdout: the lines).

    A process rather than a streaming HTTP response so the caller can end it at once
    (terminate, wait, close stdout) instead of waiting on a blocked read.
    """

    argv = [kubectl_binary(), "--kubeconfig", str(kubeconfig), "logs", "-f", "-n", namespace, pod]
    if container:
        argv += ["-c", container]
    if since_seconds is not None:
        argv.append(f"--since={since_seconds}s")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def kubeconfig_context(path: Path) -> tuple[str, str, str]:
    """(current context name, API server URL, default namespace) of a kubeconfig file."""
    config = KubeConfig.from_file(str(path))
    ctx = config.current_context or ""
    single = config.get()
    if single is None:
        return ctx, "", "default"
    return ctx, str(single.cluster.server or ""), single.namespace or "default"


def service_proxy(
    client: Client,
    namespace: str,
    service: str,
    path: str = "/",
    *,
    port: str = "http",
    method: str = "GET",
    content: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """An HTTP request to a Service through the API server's proxy; status, headers, body.

    Works without kube-proxy, an Ingress or a port-forward: the API server dials an endpoint.
    Any status the service answers with is returned, not raised; API errors are mapped.
    """
    http: httpx2.Client = client._client._client  # lightkube's transport, TLS and auth
    url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
    with kube_errors(f"{method} {service}{path} through the API server proxy"):
        response = http.request(
            method, url, content=content, headers=headers or {}, timeout=timeout
        )
    return response.status_code, dict(response.headers), response.content
