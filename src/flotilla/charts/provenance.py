"""Provenance files (``<chart>.tgz.prov``) that ``helm verify`` and ``helm pull --verify`` accept.

:func:`message_block` is pure and builds exactly what helm signs: the chart metadata as YAML, the
YAML document-end marker ``...`` (``---`` is illegal inside a clearsigned message), then
``files: {<archive>: sha256:<hex>}``. :func:`clearsign` is the adapter that hands it to ``gpg``.
With ``--keyring`` the key is imported into a throwaway GnuPG home, so a CI secret keyring never
touches the runner's own ``~/.gnupg``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flotilla.charts.errors import SigningError

_Dumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class SigningKey:
    """Which key signs: a user id or fingerprint, from a keyring file or the default GnuPG home."""

    name: str
    keyring: Path | None = None
    """A secret keyring (``gpg --export-secret-keys``, binary or armored); None: ``$GNUPGHOME``."""
    passphrase_file: Path | None = None
    """File whose first line is the key's passphrase; None when the key has none."""


def message_block(metadata: dict[str, Any], archive_name: str, archive: bytes) -> str:
    """The text helm signs for an archive (pkg/provenance ``messageBlock``)."""
    meta = yaml.dump(
        metadata,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,
    )
    digest = hashlib.sha256(archive).hexdigest()
    files = yaml.dump(
        {"files": {archive_name: f"sha256:{digest}"}}, Dumper=_Dumper, default_flow_style=False
    )
    return f"{meta}\n...\n{files}"


def _gpg() -> str:
    gpg = shutil.which("gpg")
    if gpg is None:
        raise SigningError("signing needs the `gpg` binary (Debian package gpg); none on PATH")
    return gpg


def clearsign(text: str, key: SigningKey) -> str:
    """Clearsign ``text`` with SHA-512 using gpg; raise SigningError with gpg's own message."""
    gpg = _gpg()
    with tempfile.TemporaryDirectory(prefix="flotilla-gpg-") as tmp:
        env = dict(os.environ)
        if key.keyring is not None:
            if not key.keyring.is_file():
                raise SigningError(f"keyring {key.keyring} does not exist")
            env["GNUPGHOME"] = tmp
            os.chmod(tmp, 0o700)
            imported = subprocess.run(
                [gpg, "--batch", "--quiet", "--import", str(key.keyring)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if imported.returncode != 0:
                raise SigningError(
                    f"cannot import keyring {key.keyring}: {imported.stderr.strip()}"
                )
        cmd = [
            gpg,
            "--batch",
            "--yes",
            "--armor",
            "--clearsign",
            "--digest-algo",
            "SHA512",
            "--local-user",
            key.name,
            "--pinentry-mode",
            "loopback",
        ]
        if key.passphrase_file is not None:
            cmd += ["--passphrase-file", str(key.passphrase_file)]
        else:
            cmd += ["--passphrase", ""]
        try:
            signed = subprocess.run(
                cmd, input=text, env=env, capture_output=True, text=True, check=False, timeout=120
            )
        finally:
            if key.keyring is not None:
                subprocess.run(
                    [shutil.which("gpgconf") or "gpgconf", "--kill", "all"],
                    env=env,
                    capture_output=True,
                    check=False,
                )
        if signed.returncode != 0:
            raise SigningError(f"gpg could not sign with key {key.name!r}: {signed.stderr.strip()}")
        return signed.stdout


def provenance(metadata: dict[str, Any], archive_name: str, archive: bytes, key: SigningKey) -> str:
    """The full ``.prov`` text for an archive."""
    return clearsign(message_block(metadata, archive_name, archive), key)
