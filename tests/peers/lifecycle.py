"""What every test peer process shares: `with peer:` starts and stops it, and
`stop_process` ends a child process within a bounded time (TERM, then KILL)."""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Self

STOP_TIMEOUT_S = 5.0


class Peer:
    """A peer with `start() -> Self` and `stop()`; usable as a context manager."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def stop_process(
    process: subprocess.Popen[bytes] | None, timeout_s: float = STOP_TIMEOUT_S
) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
