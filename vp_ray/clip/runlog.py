"""Each run's log folder, ``<output_dir>/logs/<date_time>/``: the driver's ``launch.log`` (Hydra),
one file per worker process under ``workers/``, and Ray Data's ``stats()`` of the run.

Every line a stage logs while it works on a clip carries that clip's id, from a context variable
set around the clip (``clip_context``), so ``grep -r <clip_id> logs/<date_time>/`` gathers one
clip's story across processes and nodes (the output folder is shared by every node).
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path

CLIP = contextvars.ContextVar("vp_ray_clip_id", default="-")
# Lines for the log files only (a clip's stages starting and ending), never the console.
TRACE = logging.getLogger("vp_ray.trace")
TRACE.propagate = False
TRACE.setLevel(logging.INFO)
FORMAT = "%(asctime)s %(levelname)s [%(clip_id)s] %(name)s: %(message)s"

_attached: set[str] = set()


class ClipIdFilter(logging.Filter):
    """Stamps each record with the id of the clip being processed ("-" outside a clip)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.clip_id = CLIP.get()
        return True


@contextmanager
def clip_context(clip_id: str):
    token = CLIP.set(clip_id or "-")
    try:
        yield
    finally:
        CLIP.reset(token)


def worker_log_path(log_dir: str | os.PathLike, process: str) -> Path:
    return Path(log_dir) / "workers" / f"{process}-{socket.gethostname()}-{os.getpid()}.log"


def attach(log_dir: str | None, process: str) -> Path | None:
    """Send this process's log records (INFO and up, every library's) to its own file in the run's
    log folder, once per process. Returns the file, or None when the run has no log folder."""
    if not log_dir:
        return None
    path = worker_log_path(log_dir, process)
    if str(path) in _attached:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(ClipIdFilter())
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    TRACE.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    _attached.add(str(path))
    return path
