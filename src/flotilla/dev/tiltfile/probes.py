"""Tilt's links, port-forwards and readiness probes: values other built-ins take as arguments."""

from __future__ import annotations

from typing import Any

import starlark as sl

from flotilla.dev.plan.model import Link, PortForward, Probe
from flotilla.dev.tiltfile.arguments import strs
from flotilla.dev.tiltfile.errors import UsageError
from flotilla.dev.tiltfile.registry import builtin
from flotilla.dev.tiltfile.settings import SettingsBuiltins


def _opaque(value: Any) -> sl.OpaquePythonObject:
    return sl.OpaquePythonObject(value)


class ProbeBuiltins(SettingsBuiltins):
    """``link``, ``port_forward``, ``probe`` and its actions."""

    # --- links, port forwards, probes ------------------------------------------------------
    @builtin()
    def link(self, url: Any, name: Any = None) -> sl.OpaquePythonObject:
        return _opaque(Link(str(url), name or ""))

    @builtin()
    def port_forward(
        self,
        local_port: Any,
        container_port: Any = None,
        name: Any = None,
        link_path: Any = None,
        host: Any = None,
    ) -> sl.OpaquePythonObject:
        return _opaque(
            PortForward(
                int(local_port),
                None if container_port is None else int(container_port),
                name or "",
                link_path or "",
                host or "127.0.0.1",
            )
        )

    @builtin()
    def probe(
        self,
        initial_delay_secs: float = 0,
        timeout_secs: float = 1,
        period_secs: float = 10,
        success_threshold: int = 1,
        failure_threshold: int = 3,
        exec: Any = None,
        http_get: Any = None,
        tcp_socket: Any = None,
    ) -> sl.OpaquePythonObject:
        actions = [a for a in (exec, http_get, tcp_socket) if a is not None]
        if len(actions) != 1:
            raise UsageError("probe needs exactly one of exec, http_get, tcp_socket")
        base: Probe = actions[0]
        return _opaque(
            Probe(
                base.kind,
                base.command,
                base.host,
                base.port,
                base.path,
                float(initial_delay_secs),
                float(timeout_secs),
                float(period_secs),
                int(success_threshold),
                int(failure_threshold),
            )
        )

    @builtin()
    def exec_action(self, command: Any) -> sl.OpaquePythonObject:
        return _opaque(Probe("exec", strs(command, "command")))

    @builtin()
    def http_get_action(
        self, port: Any, host: str = "127.0.0.1", scheme: str = "http", path: str = "/"
    ) -> sl.OpaquePythonObject:
        return _opaque(Probe("http", (), host, int(port), path or "/"))

    @builtin()
    def tcp_socket_action(self, port: Any, host: str = "127.0.0.1") -> sl.OpaquePythonObject:
        return _opaque(Probe("tcp", (), host, int(port)))
