"""Port 25 session caps counted across workers: one table, one row per worker."""

from __future__ import annotations

from postroom.mta.inbound.shared_limits import SharedConnectionLimits, SharedCounts


def workers(count: int, *, max_total: int, max_per_ip: int) -> list[SharedConnectionLimits]:
    table = SharedCounts.create(count)
    return [
        SharedConnectionLimits(table, row, max_total=max_total, max_per_ip=max_per_ip)
        for row in range(count)
    ]


def test_a_client_is_capped_whichever_worker_took_its_connections() -> None:
    first, second = workers(2, max_total=100, max_per_ip=3)
    assert first.admit("192.0.2.1") and second.admit("192.0.2.1") and first.admit("192.0.2.1")
    assert not second.admit("192.0.2.1")
    assert not first.admit("192.0.2.1")
    assert second.admit("192.0.2.2")  # another client has its own count
    first.release("192.0.2.1")
    assert second.admit("192.0.2.1")


def test_the_total_is_the_nodes() -> None:
    first, second = workers(2, max_total=3, max_per_ip=10)
    assert first.admit("192.0.2.1") and second.admit("192.0.2.2") and second.admit("192.0.2.3")
    assert not first.admit("192.0.2.4")
    second.release("192.0.2.3")
    assert first.admit("192.0.2.4")


def test_clearing_a_dead_workers_row_frees_its_sessions() -> None:
    table = SharedCounts.create(2)
    dead = SharedConnectionLimits(table, 1, max_total=2, max_per_ip=2)
    alive = SharedConnectionLimits(table, 0, max_total=2, max_per_ip=2)
    assert dead.admit("192.0.2.1") and dead.admit("192.0.2.1")
    assert not alive.admit("192.0.2.1")
    table.clear_row(1)
    assert alive.admit("192.0.2.1") and alive.admit("192.0.2.5")


def test_many_clients_do_not_crowd_each_other_out() -> None:
    [limits] = workers(1, max_total=5000, max_per_ip=1)
    clients = [f"10.{i // 256}.{i % 256}.1" for i in range(2000)]
    refused = [ip for ip in clients if not limits.admit(ip)]
    # Two hashes over 65,536 slots: 2,000 one-connection clients all fit.
    assert refused == []
