"""Attachment helpers: safe file names, hashes and Outlook TNEF unpacking."""

from __future__ import annotations

import hashlib
import struct
import time

import pytest
from tnefparse.mapi import IMESSAGE_SIG

from mailgate.mail.attachments import guess_content_type, guess_extension, safe_filename, sha256_hex, unpack_tnef
from mailgate.mail.limits import ParseLimits


def tnef_object(level: int, attribute: int, kind: int, data: bytes) -> bytes:
    """One TNEF attribute: level, id, type, length, data, checksum (MS-OXTNEF 2.1.3.1)."""
    return struct.pack("<BHHI", level, attribute, kind, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def mapi_unicode(property_id: int, text: str) -> bytes:
    """A single-valued PT_UNICODE MAPI property, padded to four bytes."""
    raw = text.encode("utf-16-le") + b"\x00\x00"
    return struct.pack("<HHII", 0x001F, property_id, 1, len(raw)) + raw + b"\x00" * (-len(raw) % 4)


def tnef_blob(files: list[tuple[str, bytes]], mapi: bytes | None = None) -> bytes:
    """A winmail.dat as Outlook writes it: 8.3 title, data and the long name in MAPI props."""
    blob = struct.pack("<IH", 0x223E9F78, 0x0001)
    blob += tnef_object(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))
    blob += tnef_object(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))
    for name, data in files:
        blob += tnef_object(2, 0x9002, 0x0006, b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 8)
        blob += tnef_object(2, 0x8010, 0x0001, name[:12].encode("cp1252", "replace") + b"\x00")
        blob += tnef_object(2, 0x800F, 0x0006, data)
        props = mapi if mapi is not None else struct.pack("<I", 1) + mapi_unicode(0x3707, name)
        blob += tnef_object(2, 0x9005, 0x0006, props)
    return blob


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/x", "x"),
        ("..\\..\\Windows\\win.ini", "win.ini"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("evil\u202efdp.exe", "evilfdp.exe"),
        ("evil\x00.txt", "evil.txt"),
        ("tab\there.txt", "tab here.txt"),
        ("line\r\nbreak.txt", "line break.txt"),
        (".bashrc", "bashrc"),
        ("...hidden", "hidden"),
        ("trailing dots. . .", "trailing dots"),
        ('what?<is>"this"|*:', "what__is__this____"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT1.tar.gz", "_LPT1.tar.gz"),
        ("COM9", "_COM9"),
        ("console.txt", "console.txt"),
        ("Päivä ja Žemaitė.pdf", "Päivä ja Žemaitė.pdf"),
    ],
)
def test_safe_filename_neutralises_hostile_names(name: str, safe: str) -> None:
    """Directories, controls, bidi overrides, leading dots and device names are neutralised."""
    assert safe_filename(name, "attachment-1.bin") == safe


@pytest.mark.parametrize("name", [None, "", "   ", ".", "..", "../..", "/", "\u202e\u200f", "\x00\x01"])
def test_safe_filename_falls_back_when_nothing_is_left(name: str | None) -> None:
    """A name with nothing usable left becomes the fallback, never empty, "." or ".."."""
    assert safe_filename(name, "attachment-3.pdf") == "attachment-3.pdf"


def test_safe_filename_caps_bytes_and_keeps_the_extension() -> None:
    """Long names are cut to 255 UTF-8 bytes without splitting a character, extension kept."""
    name = "ä" * 300 + ".docx"
    safe = safe_filename(name, "x.bin")
    assert safe.endswith(".docx") and len(safe.encode()) <= 255
    assert safe.encode().decode("utf-8") == safe


def test_sha256_hex() -> None:
    """The digest is SHA-256 as lower-case hex."""
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_extension_and_type_guesses_use_a_fixed_table() -> None:
    """Common types map to their usual extension and back; unknown ones to .bin/octet-stream."""
    assert guess_extension("image/JPEG") == ".jpg"
    assert guess_extension("application/x-unheard-of") == ".bin"
    assert guess_content_type("Report.PDF") == "application/pdf"
    assert guess_content_type("notes.txt") == "text/plain"
    assert guess_content_type("README") == "application/octet-stream"


def test_tnef_unpacks_the_real_attachments() -> None:
    """A winmail.dat yields its files with long names, types and exact bytes."""
    blob = tnef_blob([("Quarterly report 2025.pdf", b"%PDF-1.4 hello"), ("päivä.txt", b"hei")])
    assert unpack_tnef(blob, ParseLimits()) == [
        ("Quarterly report 2025.pdf", "application/pdf", b"%PDF-1.4 hello"),
        ("päivä.txt", "text/plain", b"hei"),
    ]


def test_tnef_without_long_names_uses_the_title() -> None:
    """Without MAPI properties the 8.3 title, in the OEM code page, is the name."""
    blob = tnef_blob([("REPORT.DOC", b"doc")], mapi=struct.pack("<I", 0))
    assert unpack_tnef(blob, ParseLimits()) == [("REPORT.DOC", "application/msword", b"doc")]


@pytest.mark.parametrize("blob", [b"", b"garbage", b"\x78\x9f\x3e\x22\x01\x00\x02", tnef_blob([("a.txt", b"x")])[:-7]])
def test_unparseable_tnef_gives_nothing(blob: bytes) -> None:
    """Junk or a truncated stream gives [] so the caller keeps winmail.dat itself."""
    assert unpack_tnef(blob, ParseLimits()) == []


@pytest.mark.parametrize(
    "mapi",
    [
        struct.pack("<I", 0xFFFFFFFF),
        struct.pack("<I", 1) + struct.pack("<HHI", 0x1002, 0x3000, 0xFFFFFFF0),
        struct.pack("<I", 1) + struct.pack("<HHII", 0x0102, 0x3701, 1, 16) + IMESSAGE_SIG,
        struct.pack("<I", 1) + struct.pack("<HHII", 0x000D, 0x3701, 1, 4) + b"abcd",
    ],
    ids=["property count", "multi-value count", "embedded message", "embedded object"],
)
def test_hostile_tnef_counts_are_refused_quickly(mapi: bytes) -> None:
    """Counts tnefparse would loop on for billions of rounds, and embedded messages, are refused."""
    started = time.perf_counter()
    assert unpack_tnef(tnef_blob([("a.txt", b"x")], mapi=mapi), ParseLimits()) == []
    assert time.perf_counter() - started < 1.0


def test_tnef_with_too_many_attachments_is_kept_whole() -> None:
    """More files than max_attachments gives [] rather than a flood of attachments."""
    blob = tnef_blob([(f"f{i}.txt", b"x") for i in range(5)])
    assert unpack_tnef(blob, ParseLimits(max_attachments=4)) == []
