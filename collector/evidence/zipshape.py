"""The zip's own bytes held to the shape the bundle writer makes, so an edited header byte fails too.

The manifest's digests cover every member's content, and the signature covers the manifest; what neither
covers is the zip's bookkeeping: each entry's local header, its data descriptor, the central directory and
the end record. Every field there is either written twice (local header and central directory, or data
descriptor and central directory), so a change to one copy shows as a disagreement, or has the one value
Python's zipfile writes for our bundles (no per-entry comment, attributes 0600, deflate, one disk, the
entry count). Python reads only the central directory and ignores most of these, which is why they are
checked here rather than left to it.
"""

from __future__ import annotations

import struct
import zipfile

LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature, version needed, flags, method, time, date, crc, sizes, lengths
CENTRAL = struct.Struct("<4sBBBBHHHHIIIHHHHHII")
EOCD = struct.Struct("<4sHHHHIIH")
ALLOWED_FLAGS = 0x08 | 0x800  # data descriptor; UTF-8 names
EXTERNAL_ATTR = 0o600 << 16  # what zipfile gives the entries it writes from a name
ZIP64_EXTRA = 0x0001


def _extra_ok(extra: bytes) -> bool:
    i = 0
    while i < len(extra):
        if i + 4 > len(extra):
            return False
        header, size = struct.unpack("<HH", extra[i:i + 4])
        if header != ZIP64_EXTRA or i + 4 + size > len(extra) or size % 8:
            return False
        i += 4 + size
    return True


def _dostime(info: zipfile.ZipInfo) -> tuple[int, int]:
    y, mo, d, h, mi, s = info.date_time
    return h << 11 | mi << 5 | s // 2, (y - 1980) << 9 | mo << 5 | d


def check(raw: bytes, zf: zipfile.ZipFile, problems: list[str]) -> None:
    """Append a problem for each header field that does not match its other copy or the value we write.
    (zipfile's offsets are positions in the file, bytes before the archive included.)"""
    for info in zf.infolist():
        start = info.header_offset
        name = info.filename
        if raw[start:start + 4] != b"PK\x03\x04":
            continue  # reported by the layout check
        _, need, flags, method, tm, dt, crc, csize, usize, nlen, xlen = LOCAL.unpack_from(raw, start)
        extra = raw[start + 30 + nlen:start + 30 + nlen + xlen]
        wrong = []
        streamed = bool(flags & 0x08)
        if (need, flags, method) != (info.extract_version, info.flag_bits, info.compress_type):
            wrong.append("version, flags or compression")
        if (tm, dt) != _dostime(info):
            wrong.append("time")
        if raw[start + 30:start + 30 + nlen] != _raw_name(info):
            wrong.append("name")
        if not streamed and (crc, csize, usize) not in ((info.CRC, info.compress_size, info.file_size),
                                                          (info.CRC, 0xFFFFFFFF, 0xFFFFFFFF)):
            wrong.append("CRC or sizes")
        if streamed and (crc, csize, usize) not in ((0, 0, 0), (0, 0xFFFFFFFF, 0xFFFFFFFF)):
            wrong.append("CRC or sizes (they follow the data)")
        sizes = (0, 0) if streamed else (info.file_size, info.compress_size)  # Zip64: uncompressed first
        if not _extra_ok(extra) or (extra and _sizes(extra) != sizes):
            wrong.append("extra field")
        if streamed:
            end = start + 30 + nlen + xlen + info.compress_size
            at = end + 4 if raw[end:end + 4] == b"PK\x07\x08" else end
            wide = len(extra) >= 4
            got = struct.unpack_from("<IQQ" if wide else "<III", raw, at)
            if got != (info.CRC, info.compress_size, info.file_size):
                wrong.append("data descriptor")
        if info.flag_bits & ~ALLOWED_FLAGS or info.compress_type != zipfile.ZIP_DEFLATED:
            wrong.append("flags or compression method we never write")
        if (info.flag_bits & 0x800) != (0 if name.isascii() else 0x800):
            wrong.append("name encoding flag")
        if info.create_version != info.extract_version or info.create_system not in (0, 3):
            wrong.append("made-by version")
        if info.volume or info.internal_attr or info.external_attr != EXTERNAL_ATTR or info.comment:
            wrong.append("attributes, disk or comment")
        if not _extra_ok(info.extra):
            wrong.append("central extra field")
        if wrong:
            problems.append(f"{name}: zip header edited ({', '.join(wrong)} differ from the other copy or from "
                            "what the bundle writer writes)")
    _central(raw, zf, problems)
    _end_record(raw, zf, problems)


def _central(raw: bytes, zf: zipfile.ZipFile, problems: list[str]) -> None:
    """Each central directory entry's lengths and reserved byte as read, and the entries end where the
    end record begins (zipfile reads the last entry's name or extra short when a length grew)."""
    pos = zf.start_dir
    for info in zf.infolist():
        if raw[pos:pos + 4] != b"PK\x01\x02" or pos + CENTRAL.size > len(raw):
            problems.append(f"{info.filename}: central directory entry not where the one before it ends")
            return
        fields = CENTRAL.unpack_from(raw, pos)
        reserved, nlen, xlen, clen = fields[4], fields[12], fields[13], fields[14]
        if reserved or (nlen, xlen, clen) != (len(_raw_name(info)), len(info.extra), len(info.comment)):
            problems.append(f"{info.filename}: central directory entry edited (lengths or reserved byte)")
        pos += CENTRAL.size + nlen + xlen + clen
    if raw[pos:pos + 4] not in (b"PK\x05\x06", b"PK\x06\x06"):
        problems.append("the central directory does not end where the end record begins")


def _sizes(extra: bytes) -> tuple[int, ...]:
    """The 8-byte values of a (checked) Zip64 extra field."""
    body = extra[4:]
    return struct.unpack(f"<{len(body) // 8}Q", body[:len(body) // 8 * 8])


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    return info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")


def _end_record(raw: bytes, zf: zipfile.ZipFile, problems: list[str]) -> None:
    at = raw.rfind(b"PK\x05\x06")
    if at < 0 or at + EOCD.size > len(raw):
        problems.append("the zip's end record is missing")
        return
    _, disk, cd_disk, here, total, _size, _offset, clen = EOCD.unpack_from(raw, at)
    n = len(zf.infolist())
    counts = {(n, n)} | ({(0xFFFF, 0xFFFF)} if raw.rfind(b"PK\x06\x06") >= 0 else set())
    if (disk, cd_disk) != (0, 0) or (here, total) not in counts or clen != len(raw) - at - EOCD.size:
        problems.append("the zip's end record was edited (disk numbers, entry counts or comment length)")


def stream_complete(fh) -> bool:
    """After reading a member to its end: whether its deflate stream ended exactly where the entry does.

    A changed final-block bit leaves the same output and CRC, so only the decompressor's own end-of-stream
    says the bytes were edited. (Reads zipfile's decompressor; where a Python has none to read, True.)"""
    d = getattr(fh, "_decompressor", None)
    if d is None or not hasattr(d, "eof"):
        return True
    return bool(d.eof) and not d.unused_data
