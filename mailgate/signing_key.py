"""The desk's signing secret: read from its file, or created there (0600) on first start (tier 2).

It signs Message-IDs, agent reply addresses and bounce addresses. Losing it only means older
signed addresses stop verifying; it never leaves the machine and is never logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_secret(path: Path) -> bytes:
    """The secret's bytes; a new random one is written atomically if the file does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process created it between our read and our create: use theirs.
        return _read(path)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return _read(path)


def _read(path: Path) -> bytes:
    value = path.read_text().strip()
    if len(value) < 32:
        raise ValueError(f"{path}: the signing secret must be at least 32 characters")
    return value.encode()
