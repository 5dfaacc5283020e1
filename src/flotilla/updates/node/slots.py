"""A/B slots like Flatcar's USR-A/USR-B: files, directories or block devices.

The agent writes only the slot that is not running, reads it back, and only a slot whose first
``size`` bytes hash to the expected sha256 may be marked for the next boot. Which slot is which is
a pure decision (:func:`inactive`); writing and verifying are the only I/O here.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
PAYLOAD_NAME = "payload"
"""The file a directory slot holds."""


class SlotError(OSError):
    """A slot cannot be written or does not hold what it should."""


class SlotKind(enum.StrEnum):
    """What backs a slot."""

    FILE = "file"
    DIRECTORY = "directory"
    BLOCK = "block"


@dataclass(frozen=True)
class Slot:
    """One of the two slots: its name (``A``/``B``) and where it lives."""

    name: str
    path: Path

    def kind(self) -> SlotKind:
        """Block device, directory, or (also when it does not exist yet) a file."""
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return SlotKind.FILE
        if stat.S_ISBLK(mode):
            return SlotKind.BLOCK
        if stat.S_ISDIR(mode):
            return SlotKind.DIRECTORY
        return SlotKind.FILE

    def target(self) -> Path:
        """The path the payload bytes go to."""
        return self.path / PAYLOAD_NAME if self.kind() is SlotKind.DIRECTORY else self.path


def inactive(active: str) -> str:
    """The slot to write: the other one. Anything but ``B`` counts as running ``A``."""
    return "A" if active == "B" else "B"


def capacity(slot: Slot) -> int | None:
    """Bytes a block device holds (None for files and directories, which grow)."""
    if slot.kind() is not SlotKind.BLOCK:
        return None
    fd = os.open(slot.path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def write(slot: Slot, chunks: Iterable[bytes], size: int) -> None:
    """Copy the payload into the slot and flush it to stable storage.

    A block device keeps its size (the payload must fit; the rest is left as it is); a file or a
    directory's payload file is truncated to the payload.
    """
    cap = capacity(slot)
    if cap is not None and size > cap:
        raise SlotError(f"payload of {size} bytes does not fit slot {slot.name} ({cap} bytes)")
    target = slot.target()
    flags = os.O_WRONLY
    if slot.kind() is not SlotKind.BLOCK:
        flags |= os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(target, flags, 0o600)
    except OSError as e:
        raise SlotError(f"cannot open slot {slot.name} ({target}): {e.strerror}") from e
    written = 0
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                written += n
        os.fsync(fd)
    except OSError as e:
        raise SlotError(f"writing slot {slot.name} failed: {e.strerror}") from e
    finally:
        os.close(fd)
    if written != size:
        raise SlotError(f"wrote {written} bytes to slot {slot.name}, expected {size}")


def digest(slot: Slot, size: int) -> str:
    """Hex sha256 of the slot's first ``size`` bytes; short content is a :class:`SlotError`."""
    h = hashlib.sha256()
    remaining = size
    try:
        with open(slot.target(), "rb") as f:
            while remaining:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    raise SlotError(f"slot {slot.name} holds fewer than {size} bytes")
                h.update(chunk)
                remaining -= len(chunk)
    except FileNotFoundError as e:
        raise SlotError(f"slot {slot.name} is empty") from e
    return h.hexdigest()


def verify(slot: Slot, size: int, sha256_hex: str) -> bool:
    """Whether the slot holds exactly the expected payload (size and postinstall sha256)."""
    try:
        return digest(slot, size) == sha256_hex.lower()
    except SlotError:
        return False
