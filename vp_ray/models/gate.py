"""A gate in front of a test model: let the first clips through, hold every later one.

Tests that interrupt, kill or slow a run need it in a known state ("2 clips committed, the third
held in the model, 5 not started"), not a hope about relative speeds. The ``faulty`` and ``sim``
models take ``hold_after_clips``: the first that many calls (counted across all actors, on every
node of a one-machine test cluster) pass, and every later call waits until the file ``open``
exists in the gate folder. A waiting call leaves a ``held-*`` file naming its node, so a test can
wait for the state it wants instead of for a time.

Tickets are files created with ``O_EXCL``, so the count is exact whatever the concurrency, and
holds across runs that share the folder (a resumed run finds the first clips' tickets taken).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

OPEN = "open"


class Gate:
    def __init__(self, folder: str | os.PathLike, pass_first: int):
        self.folder = Path(folder)
        self.pass_first = pass_first

    def enter(self) -> None:
        """Return at once for the first ``pass_first`` calls, or when the gate is open; else wait."""
        if self.pass_first < 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._take_ticket() or self.is_open():
            return
        held = self.folder / f"held-{os.getpid()}-{time.monotonic_ns()}"
        held.write_text(json.dumps({"node": _node_id(), "pid": os.getpid()}))
        while not self.is_open():
            time.sleep(0.05)

    def is_open(self) -> bool:
        return (self.folder / OPEN).exists()

    def _take_ticket(self) -> bool:
        for number in range(self.pass_first):
            try:
                os.close(os.open(self.folder / f"ticket-{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return True
            except FileExistsError:
                continue
        return False


def held(folder: str | os.PathLike) -> list[dict]:
    """What the calls waiting at the gate in ``folder`` wrote: their nodes and processes."""
    found = []
    for path in sorted(Path(folder).glob("held-*")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # being written: it will be there on the next look
            continue
    return found


def open_gate(folder: str | os.PathLike) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / OPEN).touch()


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - outside Ray the gate still works
        return None
