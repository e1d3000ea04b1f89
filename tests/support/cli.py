"""Running the `mailgate` command line as an operator would: a real process per command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The worker once over the queue, as the daemon would run it, without binding a listener.
_PROCESS_QUEUE = (
    "import asyncio, sys\n"
    "from mailgate.app import App\n"
    "from mailgate.config import load_config\n"
    "async def main():\n"
    "    app = App(load_config(sys.argv[1]))\n"
    "    await app.worker.run_until_idle()\n"
    "    app.store.dispose()\n"
    "asyncio.run(main())\n"
)


def mailgate(config: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "mailgate", "--config", str(config), *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=120)


def process_queue(config: Path) -> None:
    """Run the worker once over the queue, as the daemon would."""
    subprocess.run([sys.executable, "-c", _PROCESS_QUEUE, str(config)], check=True, timeout=120)
