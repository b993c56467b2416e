"""Helpers the tests share: ports for servers of their own, and waiting for a state."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

GUARD_S = 600  # turns a hang into a failure; never a pace: every wait is for a state


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on every interface, below the range the kernel hands out for
    port 0. Between choosing them and a server binding them, nothing that asks for any free port
    (Ray's own agents and workers, each outgoing connection) can take one: a Ray head given ports
    from that range once found one taken meanwhile, and its runtime-env agent's requests reached
    another Ray's metrics server (HTTP 405)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()  # seeded afresh: two suites on one machine pick different ports
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20000, max(low, 20001))
        if port not in ports and _free(port):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))  # all interfaces: taken on any address means taken
        except OSError:
            return False
    return True


def wait_for(what: str, check, *, proc=None, timeout: float = GUARD_S, every: float = 0.1):
    """``check()``'s first truthy answer. ``proc``: a process whose end fails the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        assert proc is None or proc.poll() is None, f"the process ended (rc {proc.returncode}) before: {what}"
        assert time.monotonic() < deadline, f"not reached in {timeout:g} s: {what}"
        time.sleep(every)
