"""Attachment names, hashes and Outlook TNEF (winmail.dat) unpacking, all in memory.

Names come from the sender, so `safe_filename` makes them harmless for any later file system
or download header. Archives are never opened; TNEF is the one container unpacked, because
Outlook hides ordinary attachments inside it.
"""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata

from tnefparse import TNEF, TNEFAttachment, TNEFObject
from tnefparse import properties as mapi_names
from tnefparse.codepage import Codepage
from tnefparse.mapi import IMESSAGE_SIG

from mailgate.mail.limits import ParseLimits

MAX_FILENAME_BYTES = 255
MAX_EXTENSION_CHARS = 16

# A fixed table instead of mimetypes: mimetypes reads /etc/mime.types on first use, which makes
# names depend on the host and touches the file system.
_EXTENSIONS = {
    "application/gzip": ".gz",
    "application/json": ".json",
    "application/ms-tnef": ".dat",
    "application/msword": ".doc",
    "application/octet-stream": ".bin",
    "application/pdf": ".pdf",
    "application/pgp-signature": ".asc",
    "application/pkcs7-signature": ".p7s",
    "application/rtf": ".rtf",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-outlook": ".msg",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/x-7z-compressed": ".7z",
    "application/x-pkcs7-signature": ".p7s",
    "application/x-rar-compressed": ".rar",
    "application/x-tar": ".tar",
    "application/xml": ".xml",
    "application/zip": ".zip",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "image/bmp": ".bmp",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "image/tiff": ".tif",
    "image/webp": ".webp",
    "message/delivery-status": ".txt",
    "message/rfc822": ".eml",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "text/html": ".html",
    "text/markdown": ".md",
    "text/plain": ".txt",
    "text/rfc822-headers": ".txt",
    "text/rtf": ".rtf",
    "text/vcard": ".vcf",
    "text/xml": ".xml",
    "video/mp4": ".mp4",
}
_TYPES = {ext: ctype for ctype, ext in sorted(_EXTENSIONS.items(), reverse=True)}
_TYPES.update({".jpeg": "image/jpeg", ".htm": "text/html", ".txt": "text/plain"})

# Names Windows maps to devices whatever the extension ("CON.txt" opens the console).
_RESERVED_STEMS = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"]
)
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')
_WHITESPACE_RUN = re.compile(r"\s+")
_CONTROL_SPACES = str.maketrans("\t\n\v\f\r", "     ")


def guess_extension(content_type: str) -> str:
    """A file extension for a MIME type, ".bin" when unknown."""
    return _EXTENSIONS.get(content_type.lower(), ".bin")


def guess_content_type(filename: str) -> str:
    """A MIME type for a file name's extension, application/octet-stream when unknown."""
    _, dot, ext = filename.rpartition(".")
    if not dot:
        return "application/octet-stream"
    return _TYPES.get("." + ext.lower(), "application/octet-stream")


def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data` as lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def safe_filename(name: str | None, fallback: str) -> str:
    """A name safe to store or offer for download: no path, controls or device names.

    Never empty, never "." or "..", at most 255 UTF-8 bytes with the extension kept.
    """
    text = _clean_name(name or "")
    if not text:
        text = _clean_name(fallback) or "attachment.bin"
    return _cap_bytes(text)


def _clean_name(name: str) -> str:
    text = unicodedata.normalize("NFC", name).translate(_CONTROL_SPACES)
    # Drop every Unicode control, format (bidi overrides such as U+202E make "evil\u202efdp.exe"
    # display as "evilexe.pdf"), surrogate and private-use or unassigned character.
    text = "".join(char for char in text if not unicodedata.category(char).startswith("C"))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]  # directories, Windows and POSIX
    text = _WINDOWS_FORBIDDEN.sub("_", _WHITESPACE_RUN.sub(" ", text))
    # Leading dots hide files and spell "..", trailing dots and spaces vanish on Windows.
    text = text.strip(" ").lstrip(".").rstrip(". ")
    stem = text.split(".", 1)[0].strip().upper()
    if stem in _RESERVED_STEMS:
        text = "_" + text
    return text


def _cap_bytes(text: str) -> str:
    if len(text.encode()) <= MAX_FILENAME_BYTES:
        return text
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXTENSION_CHARS:
        stem, ext = text, ""
    suffix = ("." + ext) if ext else ""
    budget = MAX_FILENAME_BYTES - len(suffix.encode())
    # Cutting the UTF-8 bytes may split a character; "ignore" drops the partial one.
    short = stem.encode()[:budget].decode("utf-8", "ignore").rstrip(". ")
    return (short or "attachment") + suffix


# --- TNEF -------------------------------------------------------------------------------------

_TNEF_SIGNATURE = 0x223E9F78
_TNEF_HEADER = 6
_TNEF_OBJECT_OVERHEAD = 11  # level (1), id (2), type (2), length (4), ..., checksum (2)
_MAX_TNEF_OBJECTS = 20_000
_MAX_MAPI_VALUES = 100_000
_FIXED_MAPI_SIZES = {0x2: 2, 0xB: 2, 0x3: 4, 0x4: 4, 0xA: 4, 0x5: 8, 0x6: 8, 0x7: 8, 0x14: 8, 0x40: 8, 0x48: 16}
_VARIABLE_MAPI_TYPES = frozenset({0x0, 0xD, 0x1E, 0x1F, 0x102})
_BINARY_MAPI_TYPE = 0x102
_MULTI_VALUE_FLAG = 0x1000
_NAMED_PROPERTY = 0x8000


def unpack_tnef(data: bytes, limits: ParseLimits) -> list[tuple[str, str, bytes]]:
    """The real attachments inside a winmail.dat as (name, content type, bytes).

    Returns [] on any error, or when there are more than limits.max_attachments, so the
    caller keeps winmail.dat itself. Names are raw; the caller sanitises them.
    """
    try:
        chunks = _tnef_chunks(data)
        found = _tnef_attachments(chunks) if chunks is not None else []
    except Exception:  # tnefparse raises struct, Unicode and Value errors on junk
        return []
    return found if len(found) <= limits.max_attachments else []


def _tnef_chunks(data: bytes) -> list[bytes] | None:
    """Split the TNEF stream into exact object byte strings, or None if it is not one.

    tnefparse's own reader copies the whole remaining stream for every object (quadratic) and
    trusts every count it reads, so the framing is walked here with bounds checks.
    """
    if len(data) < _TNEF_HEADER or struct.unpack_from("<I", data)[0] != _TNEF_SIGNATURE:
        return None
    chunks: list[bytes] = []
    offset = _TNEF_HEADER
    while offset + _TNEF_OBJECT_OVERHEAD <= len(data):
        (length,) = struct.unpack_from("<I", data, offset + 5)
        end = offset + _TNEF_OBJECT_OVERHEAD + length
        if end > len(data) or len(chunks) >= _MAX_TNEF_OBJECTS:
            return None
        chunks.append(data[offset:end])
        offset = end
    return chunks


def _tnef_attachments(chunks: list[bytes]) -> list[tuple[str, str, bytes]]:
    codepage = "cp1252"
    attachments: list[TNEFAttachment] = []
    titles: dict[int, bytes] = {}
    for chunk in chunks:
        obj = TNEFObject(chunk, do_checksum=False)
        if obj.name == TNEF.ATTOEMCODEPAGE and len(obj.data) >= 4:
            codepage = Codepage(struct.unpack_from("<I", obj.data)[0]).codepage()
        elif obj.name == TNEF.ATTATTACHRENDDATA:
            attachments.append(TNEFAttachment(codepage))
        elif obj.level == TNEF.LVL_ATTACHMENT and attachments:
            if obj.name == TNEF.ATTATTACHTITLE:
                titles[len(attachments) - 1] = obj.data
            elif obj.name == TNEF.ATTATTACHMENT and not _mapi_is_bounded(obj.data):
                return []
            attachments[-1].add_attr(obj)
    found = []
    for index, attachment in enumerate(attachments):
        if attachment.data:
            name = _tnef_name(attachment, titles.get(index, b""), codepage)
            found.append((name, _tnef_content_type(attachment, name), bytes(attachment.data)))
    return found


def _tnef_name(attachment: TNEFAttachment, title: bytes, codepage: str) -> str:
    for attr in attachment.mapi_attrs:
        if attr.name == mapi_names.MAPI_ATTACH_LONG_FILENAME:
            value = attr.data
            return value if isinstance(value, str) else _decode_text(bytes(value), codepage)
    return _decode_text(title.rstrip(b"\x00"), codepage)


def _decode_text(data: bytes, codepage: str) -> str:
    try:
        return data.decode(codepage, "replace")
    except LookupError:
        return data.decode("cp1252", "replace")


def _tnef_content_type(attachment: TNEFAttachment, name: str) -> str:
    for attr in attachment.mapi_attrs:
        if attr.name == mapi_names.MAPI_ATTACH_MIME_TAG and isinstance(attr.data, str):
            return attr.data.strip().lower()
    return guess_content_type(name)


def _mapi_is_bounded(block: bytes) -> bool:
    """True when every count in a MAPI property block fits the bytes that follow it.

    tnefparse loops over such counts without checking them (2**32 iterations on a 20-byte
    block), and parses an embedded message without limits; both are refused here.
    """
    if len(block) < 4:
        return False
    (count,) = struct.unpack_from("<I", block)
    offset, values = 4, 0
    for _ in range(count):
        if offset + 4 > len(block):
            return False
        attr_type, attr_name = struct.unpack_from("<HH", block, offset)
        offset = _skip_named_property(block, offset + 4) if attr_name >= _NAMED_PROPERTY else (offset + 4)
        step = _skip_mapi_values(block, offset, attr_type, attr_name)
        if step is None:
            return offset <= len(block)  # tnefparse stops at an unknown type, as may we
        offset, taken = step
        values += taken
        if offset > len(block) or values > _MAX_MAPI_VALUES:
            return False
    return True


def _skip_named_property(block: bytes, offset: int) -> int:
    """Offset after a named property's GUID and kind/ID or name (MS-OXTNEF 2.1.3.5)."""
    if offset + 20 > len(block):
        return len(block) + 1
    (kind,) = struct.unpack_from("<I", block, offset + 16)
    offset += 20
    if kind == 0:
        return offset + 4
    if offset + 4 > len(block):
        return len(block) + 1
    name_len: int = struct.unpack_from("<I", block, offset)[0]
    return offset + 4 + name_len + (-name_len % 4)


def _skip_mapi_values(block: bytes, offset: int, attr_type: int, attr_name: int) -> tuple[int, int] | None:
    """(offset after the values, number of values), or None for a type tnefparse rejects."""
    if attr_name == mapi_names.MAPI_ATTACH_DATA_OBJ and _embeds_message(block, offset, attr_type):
        return len(block) + 1, 0
    multi = bool(attr_type & _MULTI_VALUE_FLAG)
    attr_type &= ~_MULTI_VALUE_FLAG
    if attr_type not in _FIXED_MAPI_SIZES and attr_type not in _VARIABLE_MAPI_TYPES:
        return None
    values = 1
    if multi:
        if offset + 4 > len(block):
            return len(block) + 1, 0
        (values,) = struct.unpack_from("<I", block, offset)
        offset += 4
        if values > len(block) - offset:
            return len(block) + 1, 0
    for _ in range(values):
        offset = _skip_one_value(block, offset, attr_type, multi)
        if offset > len(block):
            return offset, values
    if values % 2 and attr_type in (0x2, 0xB):
        offset += 2
    return offset, values


def _embeds_message(block: bytes, offset: int, attr_type: int) -> bool:
    """True for an embedded Outlook message or OLE object in PR_ATTACH_DATA_OBJ.

    tnefparse parses those as a whole new TNEF stream without any of these checks, so such a
    winmail.dat is kept as it is. Plain single-valued binary data is fine.
    """
    if attr_type != _BINARY_MAPI_TYPE or offset + 8 > len(block):
        return True
    items, _ = struct.unpack_from("<II", block, offset)
    return items != 1 or block.startswith(IMESSAGE_SIG, offset + 8)


def _skip_one_value(block: bytes, offset: int, attr_type: int, multi: bool) -> int:
    if attr_type in _FIXED_MAPI_SIZES:
        return offset + _FIXED_MAPI_SIZES[attr_type]
    items = 1
    if not multi:
        if offset + 4 > len(block):
            return len(block) + 1
        (items,) = struct.unpack_from("<I", block, offset)
        offset += 4
        if items > (len(block) - offset) // 4:
            return len(block) + 1
    for _ in range(items):
        if offset + 4 > len(block):
            return len(block) + 1
        (length,) = struct.unpack_from("<I", block, offset)
        offset += 4 + length + (-length % 4)
    return offset
