"""Import releases from an upstream Omaha server, as Nebraska's ``-enable-syncer`` does.

Once per interval, for each configured channel and architecture, the syncer checks in with the
upstream as a machine on that channel would (:mod:`protocol`). A newer version becomes a
package (URL, size, sha1, sha256, extra files as announced) and the channel moves to it, with an
activity entry; with ``--host-packages`` the files are downloaded and verified first and the
package points at this server (:mod:`payload_host`). It is idempotent (it asks with the version
the channel already serves, so upstream answers ``noupdate`` once it has caught up), never
deletes or moves a channel backwards, and an upstream error only costs that poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine

from flotilla.core.errors import FlotillaError
from flotilla.updates.models import FLATCAR_APP_ID, InvalidVersionError, Package, Version
from flotilla.updates.server import catalog
from flotilla.updates.server.releases.payload_host import PayloadError, PayloadHost
from flotilla.updates.server.releases.protocol import (
    FIRST_VERSION,
    SyncError,
    UpstreamRelease,
    parse_offer,
    supported_arches,
    sync_machine_id,
    sync_request,
)

logger = logging.getLogger(__name__)

PUBLIC_FLATCAR = "https://public.update.flatcar-linux.net/v1/update/"
"""Flatcar's public update server, the usual upstream."""


@dataclass(frozen=True)
class SyncSettings:
    """What ``--sync-from`` and its companions configure."""

    upstream: str
    channels: tuple[str, ...] = ("alpha", "beta", "stable")
    arches: tuple[str, ...] = ("amd64", "arm64")
    interval: timedelta = timedelta(hours=1)
    app_id: str = FLATCAR_APP_ID
    host_dir: Path | None = None
    """``--host-packages``: download payloads here and serve them from this server."""
    public_url: str = ""
    """``--public-url``: where machines reach this server (hosted payload URLs start with it)."""
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not self.upstream.startswith(("http://", "https://")):
            raise FlotillaError(f"--sync-from {self.upstream!r} must be an http(s) URL")
        unknown = [a for a in self.arches if a not in supported_arches()]
        if unknown:
            raise FlotillaError(
                f"--sync-arches: unknown {', '.join(unknown)}; use {', '.join(supported_arches())}"
            )
        if not self.channels:
            raise FlotillaError("--sync-channels names no channel")
        if self.host_dir is not None and not self.public_url:
            raise FlotillaError("--host-packages needs --public-url (where machines reach us)")


@dataclass
class Syncer:
    """One upstream, polled by :meth:`run_once`; :attr:`errors` keeps the last error per channel."""

    engine: Engine
    settings: SyncSettings
    on_change: Callable[[], None] = lambda: None
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60.0))
    errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.host = (
            PayloadHost(self.settings.host_dir, self.settings.public_url)
            if self.settings.host_dir is not None
            else None
        )

    def close(self) -> None:
        self.client.close()

    def run_once(self) -> list[str]:
        """Poll every channel once; returns what changed. Errors are logged per channel."""
        changes: list[str] = []
        for channel in self.settings.channels:
            try:
                changes += self._sync_channel(channel)
            except (SyncError, PayloadError, FlotillaError, httpx.HTTPError, OSError) as e:
                if self.errors.get(channel) != str(e):
                    logger.warning(
                        "sync of channel %s from %s: %s", channel, self.settings.upstream, e
                    )
                self.errors[channel] = str(e)
            else:
                if self.errors.pop(channel, None) is not None:
                    logger.info("sync of channel %s works again", channel)
        if changes:
            self.on_change()
        return changes

    def _ask(self, channel: str, arch: str, current: str) -> UpstreamRelease | None:
        s = self.settings
        body = sync_request(
            s.app_id, channel, arch, current, sync_machine_id(s.upstream, channel, arch)
        )
        response = self.client.post(s.upstream, content=body, headers={"Content-Type": "text/xml"})
        if response.status_code != 200:
            raise SyncError(f"upstream answered HTTP {response.status_code}")
        return parse_offer(response.content, s.app_id)

    def _sync_channel(self, channel: str) -> list[str]:
        current = catalog.channel_version(self.engine, self.settings.app_id, channel)
        asked = current or FIRST_VERSION
        offers: dict[str, UpstreamRelease] = {}
        for arch in self.settings.arches:
            offer = self._ask(channel, arch, asked)
            if offer is not None and _newer(offer.version, asked):
                offers[arch] = offer
        if not offers:
            return []
        # The channel follows the newest version offered; arches that lag keep their packages.
        version = max((o.version for o in offers.values()), key=Version.parse)
        pkgs = [self._package(arch, o) for arch, o in offers.items() if o.version == version]
        return catalog.import_release(
            self.engine, self.settings.app_id, channel, version, pkgs, self.settings.upstream
        )

    def _package(self, arch: str, offer: UpstreamRelease) -> Package:
        url = offer.codebase
        if self.host is not None:
            for name, size, sha256, sha1 in [
                (offer.name, offer.size, offer.sha256_hex, offer.sha1_hex),
                *((e.name, e.size, e.sha256, "") for e in offer.extra_files),
            ]:
                dest = self.host.path(arch, offer.version, name)
                if self.host.fetch(self.client, offer.codebase + name, dest, size, sha256, sha1):
                    logger.info("downloaded and verified %s", dest)
            url = self.host.base_url(arch, offer.version)
        return Package(
            app_id=self.settings.app_id,
            version=offer.version,
            arch=arch,
            url=url,
            filename=offer.name,
            size=offer.size,
            sha256=offer.sha256_hex,
            sha1=offer.sha1_hex,
            extra_files=offer.extra_files,
        )


def _newer(version: str, than: str) -> bool:
    try:
        return Version.parse(version) > Version.parse(than)
    except InvalidVersionError as e:
        raise SyncError(f"upstream version {version[:40]!r}: {e}") from None
