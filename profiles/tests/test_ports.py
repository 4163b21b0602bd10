from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from profiles.models import ServerProfile
from profiles.ports import NoFreePort, listening_ports, next_free_port, port_holder, port_status
from servers.models import Server


def _unused_port_block(size: int) -> int:
    """The start of `size` consecutive ports nobody listens on (checked now, not reserved)."""
    busy = listening_ports()
    for start in range(30000, 60000, size):
        if not any(port in busy for port in range(start, start + size)):
            return start
    raise AssertionError("no quiet block of ports on this machine")


@pytest.mark.django_db
def test_starts_at_the_base_when_there_are_no_profiles(settings: Any) -> None:
    settings.MLXM_PORT_BASE = _unused_port_block(5)
    assert next_free_port() == settings.MLXM_PORT_BASE


def test_goes_above_every_profile_port_leaving_gaps_alone(
    settings: Any, make_profile: Callable[..., ServerProfile]
) -> None:
    base = _unused_port_block(20)
    settings.MLXM_PORT_BASE = base
    make_profile(port=base)
    make_profile(port=base + 5)  # the gap base+1..base+4 is not reused: new profiles go above
    make_profile(port=base + 2)
    assert next_free_port() == base + 6


def test_profiles_below_the_base_do_not_pull_it_down(settings: Any, make_profile: Callable[..., ServerProfile]) -> None:
    base = _unused_port_block(5)
    settings.MLXM_PORT_BASE = base
    make_profile(port=base - 100)
    assert next_free_port() == base


def test_the_profile_being_edited_does_not_count(settings: Any, make_profile: Callable[..., ServerProfile]) -> None:
    base = _unused_port_block(10)
    settings.MLXM_PORT_BASE = base
    make_profile(port=base + 1)
    edited = make_profile(port=base + 7)
    assert next_free_port(exclude=edited) == base + 2


@pytest.mark.django_db
def test_skips_a_port_held_by_a_listening_socket(settings: Any, listening_socket: socket.socket) -> None:
    held = listening_socket.getsockname()[1]
    settings.MLXM_PORT_BASE = held
    assert held in listening_ports()
    port = next_free_port()
    assert port > held
    assert port not in listening_ports()


def test_skips_a_held_port_right_above_the_last_profile(
    make_profile: Callable[..., ServerProfile], listening_socket: socket.socket, settings: Any
) -> None:
    held = listening_socket.getsockname()[1]
    settings.MLXM_PORT_BASE = 1024
    make_profile(port=held - 1)
    assert next_free_port() not in (held - 1, held)


def test_top_of_the_range_is_a_clear_error(make_profile: Callable[..., ServerProfile]) -> None:
    make_profile(port=65535)
    with pytest.raises(NoFreePort, match="65535"):
        next_free_port()


@pytest.mark.django_db
def test_top_of_the_range_when_the_last_ports_are_held(listening_socket: socket.socket) -> None:
    held = listening_socket.getsockname()[1]
    with pytest.raises(NoFreePort, match=f"between {held} and {held}"):
        next_free_port(base=held, top=held)


def test_port_holder_names_the_process(listening_socket: socket.socket) -> None:
    holder = port_holder(listening_socket.getsockname()[1])
    assert holder is not None
    assert holder.pid == os.getpid()
    assert holder.name == psutil.Process().name()


def test_port_holder_is_none_for_a_free_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening, then closed
    assert port_holder(port) is None


def test_port_status_error_for_another_profile(make_profile: Callable[..., ServerProfile]) -> None:
    other = make_profile(name="Chat", port=23456)
    status = port_status("23456")
    assert status.level == "error" and "Chat" in status.message
    assert port_status("23456", exclude=other).level != "error"


def test_port_status_warns_about_a_foreign_process(db: Any, listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    status = port_status(str(port))
    assert status.level == "warning"
    assert psutil.Process().name() in status.message and f"PID {os.getpid()}" in status.message


def test_port_status_is_calm_about_the_profiles_own_server(
    make_profile: Callable[..., ServerProfile], listening_socket: socket.socket
) -> None:
    port = listening_socket.getsockname()[1]
    mine = make_profile(port=port)
    Server.objects.create(profile=mine, state="running", desired_state="running", pid=os.getpid())
    assert port_status(str(port), exclude=mine).level == "ok"


@pytest.mark.parametrize("typed", ["", "abc", "80", "70000", "-1", "8080.5"])
def test_port_status_rejects_what_is_not_a_port(db: Any, typed: str) -> None:
    assert port_status(typed).level == "error"
