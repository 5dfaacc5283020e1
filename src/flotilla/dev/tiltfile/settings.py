"""Tilt's settings built-ins and messages; settings with no meaning here are accepted and warn once.

Part of the ``Builtins`` chain (``FileBuiltins`` → ``SettingsBuiltins`` → ``ProbeBuiltins`` →
``YamlBuiltins`` → ``Builtins``), split by role to keep each module short.
"""

from __future__ import annotations

from typing import Any

from flotilla.dev.tiltfile.arguments import duration, strs, trigger_mode_of
from flotilla.dev.tiltfile.basics import FileBuiltins
from flotilla.dev.tiltfile.errors import UsageError
from flotilla.dev.tiltfile.registry import builtin


class SettingsBuiltins(FileBuiltins):
    """Settings, feature flags and messages."""

    # --- settings and messages -------------------------------------------------------------
    @builtin()
    def trigger_mode(self, trigger_mode: Any) -> None:
        self.res.settings.trigger_mode = trigger_mode_of(trigger_mode)

    @builtin()
    def watch_settings(self, ignore: Any) -> None:
        self.res.settings.watch_ignore = strs(ignore, "ignore")

    @builtin()
    def version_settings(self, check_updates: bool = True, constraint: str = "") -> None:
        self.res.settings.version_constraint = str(constraint)

    @builtin()
    def update_settings(
        self,
        max_parallel_updates: int = 3,
        k8s_upsert_timeout_secs: int = 30,
        suppress_unused_image_warnings: Any = None,
        k8s_server_side_apply: Any = "auto",
    ) -> None:
        self.res.settings.max_parallel_updates = int(max_parallel_updates)
        self.res.settings.k8s_upsert_timeout_secs = int(k8s_upsert_timeout_secs)

    @builtin()
    def ci_settings(
        self, k8s_grace_period: str = "", timeout: str = "", readiness_timeout: str = ""
    ) -> None:
        if timeout:
            self.res.settings.ci_timeout_secs = duration(timeout)
        if readiness_timeout:
            self.res.settings.readiness_timeout_secs = duration(readiness_timeout)

    @builtin()
    def fail(self, msg: str) -> None:
        raise UsageError(f"fail: {msg}")

    @builtin()
    def warn(self, msg: str) -> None:
        self.res.warnings.append(str(msg))

    @builtin("print")
    def tilt_print(self, *args: Any, sep: str = " ") -> None:
        self.res.logs.append(sep.join(str(a) for a in args))

    # --- accepted, with no effect here --------------------------------------------------------
    def _ignored(self, what: str) -> None:
        self.ev.warn_once(what)

    @builtin()
    def disable_snapshots(self) -> None:
        self._ignored("disable_snapshots")

    @builtin()
    def secret_settings(self, disable_scrub: bool = False) -> None:
        self._ignored("secret_settings")

    @builtin()
    def docker_prune_settings(
        self,
        disable: bool = False,
        max_age_mins: int = 360,
        num_builds: int = 0,
        interval_hrs: int = 1,
        keep_recent: int = 2,
    ) -> None:
        self._ignored("docker_prune_settings")

    @builtin()
    def analytics_settings(self, enable: Any = None) -> None:
        self._ignored("analytics_settings")

    @builtin()
    def enable_feature(self, feature_name: str) -> None:
        self._ignored(f"enable_feature({feature_name!r})")

    @builtin()
    def set_team(self, team_id: str) -> None:
        self._ignored("set_team")
