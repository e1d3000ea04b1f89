"""Content-addressed attachment files under data_dir; no name from a mail ever reaches a path.

A blob's path is derived from its sha256 alone. Files are written to a temporary name, fsync'd
and renamed, so a crash never leaves a half-written blob under a final name.

The worker writes a message's attachments in the background (`start_writing`) while it files
the message, and its filing transaction waits for them before it commits: the two fsyncs per
file (about 2 ms) overlap the filing work instead of preceding it, and no commit naming a blob
happens before the blob is on disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mailgate.errors import storage_failure

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class BlobsWritten:
    """Blobs being written in the background; `wait` returns once all are on disk."""

    def __init__(self, writes: list[Future[str]]) -> None:
        self._writes = writes

    def wait(self) -> list[str]:
        """Their sha256s, in order; StorageFull or TemporaryFailure when one could not be written."""
        try:
            return [write.result() for write in self._writes]
        except OSError as error:
            raise storage_failure(error, full="attachment store is full", failed="attachment not stored") from error


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._writer: ThreadPoolExecutor | None = None
        self._writer_lock = threading.Lock()

    def start_writing(self, blobs: Sequence[bytes]) -> BlobsWritten:
        """Write `blobs` in a background thread, one after another, while the caller goes on."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="blob-writer")
            writer = self._writer
        return BlobsWritten([writer.submit(self.put, data) for data in blobs])

    def close(self) -> None:
        """Finish the background writes and end their thread."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)

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
        temporary = final.with_name(f".{sha256}.{os.getpid()}.{threading.get_ident()}.tmp")
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
