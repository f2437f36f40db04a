"""sd_notify client against real AF_UNIX datagram sockets (path and abstract)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.core import sdnotify


@pytest.fixture
def path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    address = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield receiver
    receiver.close()


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"postroom-test-{os.getpid()}-{time.monotonic_ns()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + name.encode())
    receiver.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield receiver
    receiver.close()


def received(receiver: socket.socket) -> dict[str, str]:
    payload = receiver.recv(4096).decode()
    return dict(line.split("=", 1) for line in payload.splitlines())


def test_unset_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.reloading() is False
    assert sdnotify.stopping() is False
    assert sdnotify.status("x") is False


def test_empty_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sdnotify.ready() is False


def test_ready_with_status_on_path_socket(path_socket: socket.socket) -> None:
    assert sdnotify.ready("listening on 127.0.0.1:25") is True
    assert received(path_socket) == {"READY": "1", "STATUS": "listening on 127.0.0.1:25"}


def test_ready_without_status(path_socket: socket.socket) -> None:
    assert sdnotify.ready() is True
    assert received(path_socket) == {"READY": "1"}


def test_every_helper_on_abstract_socket(abstract_socket: socket.socket) -> None:
    before_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading() is True
    reload_state = received(abstract_socket)
    assert reload_state["RELOADING"] == "1"
    assert int(reload_state["MONOTONIC_USEC"]) >= before_usec

    assert sdnotify.stopping() is True
    assert received(abstract_socket) == {"STOPPING": "1"}


def test_status_cannot_inject_assignments(path_socket: socket.socket) -> None:
    assert sdnotify.status("draining\nREADY=1") is True
    assert received(path_socket) == {"STATUS": "draining READY=1"}


def test_missing_socket_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    assert sdnotify.ready() is False


def test_missing_abstract_socket_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", f"@postroom-absent-{time.monotonic_ns()}")
    assert sdnotify.stopping() is False


def test_socket_path_that_is_not_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("x")
    monkeypatch.setenv("NOTIFY_SOCKET", str(not_a_socket))
    assert sdnotify.ready() is False


def test_unsupported_address_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False


def test_explicit_environ_overrides_process_environment(path_socket: socket.socket) -> None:
    assert sdnotify.notify("READY=1", environ={}) is False
