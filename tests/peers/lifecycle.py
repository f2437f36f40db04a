"""What every test peer process shares: `with peer:` starts and stops it,
`stop_process` ends a child process within a bounded time (TERM, then KILL), and
`die_with_parent` (a Popen `preexec_fn`) makes a child end when the test run ends
without tearing it down (pytest killed by a timeout), instead of living on."""

from __future__ import annotations

import ctypes
import signal
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


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Looked up here, in the parent: between fork and exec the child should only call it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent (thread) that started it dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
