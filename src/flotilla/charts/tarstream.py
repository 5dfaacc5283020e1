"""A small, strict reader of gzip-compressed tar streams, several times faster than ``tarfile``.

Indexing thousands of archives is dominated by header parsing, and ``tarfile`` builds a rich
object per member we do not need. This reader understands exactly what chart archives contain
(ustar, PAX ``path``/``size`` records, GNU long names) and reports everything else as a member
of another type, which :mod:`flotilla.charts.archives` then refuses. Decompression is bounded,
so a gzip bomb stops at the limit instead of filling memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from flotilla.charts.errors import UnsafeArchiveError

BLOCK = 512
REGULAR = (b"0", b"\0", b"7")
DIRECTORY = b"5"
LINKS = (b"1", b"2")
_ZERO_BLOCK = bytes(BLOCK)


@dataclass(frozen=True)
class Member:
    """One tar member: its path, type flag, link target and content (empty for non-files)."""

    name: str
    kind: bytes
    linkname: str
    data: bytes

    @property
    def is_file(self) -> bool:
        return self.kind in REGULAR

    @property
    def is_dir(self) -> bool:
        return self.kind == DIRECTORY

    @property
    def is_link(self) -> bool:
        return self.kind in LINKS


def gunzip(raw: bytes, limit: int, name: str) -> bytes:
    """Decompress at most ``limit`` bytes (plus tar overhead); refuse anything bigger."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        out = inflater.decompress(raw, limit)
    except zlib.error as e:
        raise UnsafeArchiveError(f"{name}: not a valid gzip-compressed tar archive: {e}") from e
    if inflater.unconsumed_tail:
        raise UnsafeArchiveError(f"{name}: decompressed size exceeds {limit} bytes")
    if not inflater.eof:
        raise UnsafeArchiveError(f"{name}: not a valid gzip-compressed tar archive: truncated")
    return out


def _number(field: bytes, name: str) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for large values
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError as e:
        raise UnsafeArchiveError(f"{name}: corrupt tar header (number {text!r})") from e


def _pax_records(data: bytes, name: str) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError as e:
            raise UnsafeArchiveError(f"{name}: corrupt PAX header") from e
        if length <= 0:
            raise UnsafeArchiveError(f"{name}: corrupt PAX header")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        pos += length
    return records


def _pax_size(pax: dict[str, str], name: str) -> int:
    value = pax["size"]
    if not value.isdigit():
        raise UnsafeArchiveError(f"{name}: corrupt PAX header (size {value!r})")
    return int(value)


def members(tar: bytes, name: str) -> Iterator[Member]:
    """Yield members of an uncompressed tar; raise UnsafeArchiveError on any corruption."""
    offset = 0
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    end = len(tar)
    while offset + BLOCK <= end:
        header = tar[offset : offset + BLOCK]
        if header == _ZERO_BLOCK:
            return
        stored = _number(header[148:156], name)
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise UnsafeArchiveError(f"{name}: not a valid tar archive (bad header checksum)")
        kind = header[156:157]
        size = _pax_size(pax, name) if "size" in pax else _number(header[124:136], name)
        start = offset + BLOCK
        offset = start + (size + BLOCK - 1) // BLOCK * BLOCK
        if start + size > end:
            raise UnsafeArchiveError(f"{name}: not a valid tar archive (truncated member)")
        data = tar[start : start + size]
        if kind == b"x":
            pax = _pax_records(data, name)
            continue
        if kind == b"g":
            continue
        if kind == b"L":
            long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if kind == b"K":
            long_link = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        member_name = header[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if header[257:262] == b"ustar":
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            if prefix:
                member_name = f"{prefix}/{member_name}"
        member_name = pax.get("path", long_name or member_name)
        linkname = pax.get(
            "linkpath", long_link or header[157:257].split(b"\0", 1)[0].decode("utf-8", "replace")
        )
        long_name = long_link = None
        pax = {}
        yield Member(member_name, kind, linkname, data if kind in REGULAR else b"")
    if offset < end and tar[offset:].strip(b"\0"):
        raise UnsafeArchiveError(f"{name}: not a valid tar archive (trailing garbage)")
