"""Port 25 connection caps that hold for a whole node, across its worker processes.

`[smtp.inbound] max_connections` and `max_connections_per_ip` are the node's: which
worker accepts a connection is the kernel's choice (whichever is waiting), so a cap
counted per worker would refuse a client whose connections happen to land on one
worker, or let through N times the limit. Instead the supervisor creates one
`SharedCounts` table (a memfd, inherited by every worker) with a row per worker; a
worker writes only its own row (one event loop: no lock) and reads all of them:
- a row is `SLOTS` counters of open sessions by client-address hash, and a total;
- a client's count is the smaller of its two slots (two independent hashes, as in a
  count-min sketch): another address that shares both slots is needed to count it
  too high, which with 65,536 slots and at most `max_connections` live sessions is rare;
  it can only ever refuse early, never admit past the limit;
- two workers admitting at the same instant may both see room for one: the node then
  holds up to `workers - 1` sessions over a cap, never more;
- the supervisor clears a dead worker's row before starting its successor (the dead
  one's sessions died with it).
`SharedConnectionLimits` has `ConnectionLimits`' interface (admit/release), so the
session does not know which it has. Cost: two CRC-32s and 2 × workers reads a connection.
Untrusted input: the client address (only hashed). Config keys: [smtp.inbound]
max_connections, max_connections_per_ip (through the listener).
"""

from __future__ import annotations

import mmap
import os
import zlib

SLOTS = 1 << 16
_TOTAL = SLOTS  # the index of a row's total, after its slots
_ROW = SLOTS + 1
_INT32 = 4
_SECOND_HASH_SEED = 0x9E3779B9


class SharedCounts:
    """The table: `workers` rows of int32 counters in one shared memory file."""

    def __init__(self, fd: int, workers: int) -> None:
        self.fd = fd
        self.workers = workers
        self._map = mmap.mmap(fd, workers * _ROW * _INT32)
        self.cells = memoryview(self._map).cast("i")

    @classmethod
    def create(cls, workers: int) -> SharedCounts:
        fd = os.memfd_create("postroom-connections")  # zero-filled, never on disk
        os.ftruncate(fd, workers * _ROW * _INT32)
        return cls(fd, workers)

    def clear_row(self, row: int) -> None:
        start = row * _ROW
        self.cells[start : start + _ROW] = memoryview(bytes(_ROW * _INT32)).cast("i")


class SharedConnectionLimits:
    """Open sessions overall and per client address, counted by every worker of the node."""

    def __init__(self, counts: SharedCounts, row: int, *, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._cells = counts.cells
        self._own = row * _ROW
        self._rows = range(0, counts.workers * _ROW, _ROW)

    def admit(self, client_ip: str) -> bool:
        cells, rows = self._cells, self._rows
        if sum(cells[start + _TOTAL] for start in rows) >= self.max_total:
            return False
        first, second = _slots(client_ip)
        seen = min(
            sum(cells[start + first] for start in rows),
            sum(cells[start + second] for start in rows),
        )
        if seen >= self.max_per_ip:
            return False
        own = self._own
        cells[own + first] += 1
        cells[own + second] += 1
        cells[own + _TOTAL] += 1
        return True

    def release(self, client_ip: str) -> None:
        first, second = _slots(client_ip)
        cells, own = self._cells, self._own
        cells[own + first] -= 1
        cells[own + second] -= 1
        cells[own + _TOTAL] -= 1


def _slots(client_ip: str) -> tuple[int, int]:
    data = client_ip.encode()
    first = zlib.crc32(data) % SLOTS
    second = zlib.crc32(data, _SECOND_HASH_SEED) % SLOTS
    if second == first:  # both hashes on one slot would count the client twice there
        second = (first + 1) % SLOTS
    return first, second
