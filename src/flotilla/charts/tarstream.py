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
    """Decompress at most ``limit`` bytes (plus tar overhead); refuse anything bigger.

    Concatenated gzip streams are read one after another, as Go's ``gzip.Reader`` (and so helm)
    reads them. helm reads lazily and stops at the tar's end marker, so bytes that are not
    gzip after a stream are ignored when the tar has ended by then, and refused otherwise.
    """
    out = bytearray()
    data = raw
    while True:
        remaining = limit - len(out)
        if remaining <= 0:
            raise UnsafeArchiveError(f"{name}: decompressed size exceeds {limit} bytes")
        if data is not raw and out.endswith(_ZERO_BLOCK * 2):
            return bytes(out)  # the tar ended in an earlier stream: helm reads no further
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            out += inflater.decompress(data, remaining)
        except zlib.error as e:
            raise UnsafeArchiveError(f"{name}: not a valid gzip-compressed tar archive: {e}") from e
        if inflater.unconsumed_tail:
            raise UnsafeArchiveError(f"{name}: decompressed size exceeds {limit} bytes")
        if not inflater.eof:
            raise UnsafeArchiveError(f"{name}: not a valid gzip-compressed tar archive: truncated")
        data = inflater.unused_data
        if not data:
            return bytes(out)


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
        raw_key, _, raw_value = data[space + 1 : pos + length - 1].partition(b"=")
        key, value = raw_key.decode("utf-8", "replace"), raw_value.decode("utf-8", "replace")
        if key in ("GNU.sparse.offset", "GNU.sparse.numbytes"):  # format 0.0 repeats them
            key, value = "GNU.sparse.map", f"{records.get('GNU.sparse.map', '')}{value},"
        records[key] = value
        pos += length
    return records


def _pax_size(pax: dict[str, str], name: str) -> int:
    value = pax["size"]
    if not value.isdigit():
        raise UnsafeArchiveError(f"{name}: corrupt PAX header (size {value!r})")
    return int(value)


def members(tar: bytes, name: str, max_file_bytes: int = 5 * 2**20) -> Iterator[Member]:
    """Yield members of an uncompressed tar; raise UnsafeArchiveError on any corruption.

    PAX sparse files (GNU formats 0.0, 0.1 and 1.0) are expanded, holes as zeros, as Go's
    archive/tar gives them to helm; ``max_file_bytes`` bounds the expanded size.
    """
    offset = 0
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    end = len(tar)
    while offset + BLOCK <= end:
        header = tar[offset : offset + BLOCK]
        if header == _ZERO_BLOCK:
            following = tar[offset + BLOCK : offset + 2 * BLOCK]
            if following and following != _ZERO_BLOCK:  # Go's archive/tar: ErrHeader
                raise UnsafeArchiveError(f"{name}: not a valid tar archive (zero block, then data)")
            return  # end of archive; helm reads nothing after it either
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
        if kind in REGULAR and any(key.startswith("GNU.sparse.") for key in pax):
            member_name = pax.get("GNU.sparse.name", member_name)
            data = expand_sparse(pax, data, name, max_file_bytes)
        linkname = pax.get(
            "linkpath", long_link or header[157:257].split(b"\0", 1)[0].decode("utf-8", "replace")
        )
        long_name = long_link = None
        pax = {}
        yield Member(member_name, kind, linkname, data if kind in REGULAR else b"")
    if offset < end and tar[offset:].strip(b"\0"):
        raise UnsafeArchiveError(f"{name}: not a valid tar archive (trailing garbage)")


def _sparse_map_1_0(data: bytes, name: str) -> tuple[list[tuple[int, int]], bytes]:
    """GNU sparse 1.0: a decimal map (count, then offset/size pairs) in blocks before the data."""
    lines = data.split(b"\n")
    try:
        count = int(lines[0])
        numbers = [int(x) for x in lines[1 : 1 + 2 * count]]
    except ValueError as e:
        raise UnsafeArchiveError(f"{name}: corrupt sparse map") from e
    if count < 0 or len(numbers) != 2 * count:
        raise UnsafeArchiveError(f"{name}: corrupt sparse map")
    used = sum(len(x) + 1 for x in lines[: 1 + 2 * count])
    start = (used + BLOCK - 1) // BLOCK * BLOCK
    return list(zip(numbers[::2], numbers[1::2], strict=True)), data[start:]


def expand_sparse(pax: dict[str, str], data: bytes, name: str, max_file_bytes: int) -> bytes:
    """The logical content of a PAX sparse member: data chunks placed at their offsets."""
    try:
        real = int(pax.get("GNU.sparse.realsize") or pax.get("GNU.sparse.size") or "-1")
        if pax.get("GNU.sparse.major") == "1":
            chunks, payload = _sparse_map_1_0(data, name)
        elif "GNU.sparse.map" in pax:
            numbers = [int(x) for x in pax["GNU.sparse.map"].split(",") if x]
            chunks, payload = list(zip(numbers[::2], numbers[1::2], strict=True)), data
        else:
            raise UnsafeArchiveError(f"{name}: unsupported sparse file format")
    except ValueError as e:
        raise UnsafeArchiveError(f"{name}: corrupt sparse header") from e
    if real < 0 or real > max_file_bytes:
        raise UnsafeArchiveError(
            f"{name}: sparse file of {real} bytes is over the {max_file_bytes}-byte limit per file"
        )
    out = bytearray(real)
    pos = 0
    for offset, size in chunks:
        if offset < 0 or size < 0 or offset + size > real or pos + size > len(payload):
            raise UnsafeArchiveError(f"{name}: corrupt sparse map")
        out[offset : offset + size] = payload[pos : pos + size]
        pos += size
    return bytes(out)
