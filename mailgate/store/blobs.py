"""Content-addressed attachment files under data_dir; no name from a mail ever reaches a path.

A blob's path is derived from its sha256 alone. Files are written to a temporary name, fsync'd
and renamed, so a crash never leaves a half-written blob under a final name.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if not _SHA256_RE.fullmatch(sha256):
            raise ValueError("a blob is named by a lower-case hex sha256, nothing else")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store `data` (idempotent) and return its sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.path_for(sha256)
        if final.exists() and final.stat().st_size == len(data):
            return sha256
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{sha256}.{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return sha256

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
