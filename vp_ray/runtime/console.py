"""What the driver's terminal shows while a run goes: one status line, and Ray kept quiet.

The status line says clips done/total, failed, clips/hour, the time left at that rate and how
many clips are in or waiting for each stage. On a terminal it is redrawn in place; where the
output goes to a file, it is printed as a new line every ``status_every_s`` seconds. Ray Data's
own per-operator progress is off unless ``cluster.ray_progress_bars`` turns it on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Ray's informational lines that only restate what vp-ray says itself, or concern a feature
# left off on purpose (Ray Data's progress bars).
QUIET_MESSAGES = ("Progress bars disabled", "Progress bars for operators disabled", "Token authentication is enabled")


class DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(QUIET_MESSAGES)


def quiet_ray_data(progress_bars: bool) -> None:
    """Ray Data's progress bars (or its progress log lines) only when asked; its informational
    console lines (execution plans) go to its log file only, warnings still show."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = progress_bars
    if progress_bars:
        return
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
            handler.addFilter(DropKnownNoise())


def quiet_ray_core() -> None:
    """Ray's own logger: warnings only, without the token notice (``graph.connect`` says how to
    get the token when the dashboard is on)."""
    ray_logger = logging.getLogger("ray")
    for handler in ray_logger.handlers:
        handler.addFilter(DropKnownNoise())


# Lines Ray's core worker (C++) writes to the driver's stderr although nothing is wrong with the run.
# Each stays in Ray's own log of the driver (<session>/logs/python-core-driver-*.log).
KNOWN_CORE_LINES = (
    # Ray Data passes object references of its own to every actor-pool worker it starts, whatever
    # our arguments (ray-project/ray#57733), and Ray logs that at error level (README, Troubleshooting).
    "has constructor arguments in the object store and max_restarts > 0",
)

# The filter's process: every line of its input to its output, unchanged, but the known ones.
_FILTER = """
import os, sys
known = [line.encode() for line in sys.argv[1:]]
out, pending = sys.stdout.buffer, b""
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\\n")
    kept = b"".join(line + b"\\n" for line in lines if not any(k in line for k in known))
    if kept:
        out.write(kept)
        out.flush()
out.write(pending)
out.flush()
"""


@contextmanager
def known_ray_lines_dropped():
    """Keep ``KNOWN_CORE_LINES`` off the console while Ray runs, and nothing else.

    Ray's core worker writes its error-level lines to the process's stderr itself ("so they are in
    driver logs", Ray's logging.cc), with no setting short of hiding every error. Within this block
    the process's stderr (fd 2) goes through a small process that passes every other line on
    unchanged; a process, not a thread, so what a crashing driver writes last still gets through.
    Python's own writes (``sys.stderr``) go straight to the console as before: a terminal stays one
    (the status line redraws in place). Only where ``sys.stderr`` is fd 2 (a console, a job's log;
    not a test's captured output).
    """
    try:
        on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        on_fd2 = False
    if not on_fd2:
        yield
        return
    sys.stderr.flush()
    console = os.dup(2)
    read, write = os.pipe()
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, *KNOWN_CORE_LINES], stdin=read,
                             stdout=console, stderr=console, start_new_session=True)  # not stopped by Ctrl-C
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
    python_stderr = sys.stderr
    sys.stderr = open(os.dup(console), "w", buffering=1, encoding=python_stderr.encoding,
                      errors=python_stderr.errors)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console, 2)  # the filter's input closes: it passes on what is left, then ends
        os.close(console)
        sys.stderr.close()
        sys.stderr = python_stderr
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a process started meanwhile still holds the pipe
            pass


def hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StatusLine:
    """done/total, failed, clips/hour, ETA and clips per stage; thread-safe."""

    def __init__(self, total: int, already: int, every_s: float, stream=None):
        self.total, self.already = total, already
        self.done = self.failed = 0
        self.waiting: dict[str, int] = {}
        self._stream = stream
        self.live = self.stream.isatty()
        self.every_s = every_s
        self.start = time.monotonic()
        self._printed = 0.0
        self._lock = threading.Lock()

    @property
    def stream(self):
        """The stream given, else ``sys.stderr`` as it is now (``known_ray_lines_dropped`` rebinds it)."""
        return sys.stderr if self._stream is None else self._stream

    def text(self) -> str:
        finished = self.done + self.failed
        elapsed = time.monotonic() - self.start
        rate = finished / elapsed * 3600 if finished and elapsed > 0 else 0.0
        left = self.total - self.already - finished
        eta = hms(left / rate * 3600) if rate else "?"
        queue = ", ".join(f"{stage} {count}" for stage, count in self.waiting.items())
        return (f"clips {self.already + finished}/{self.total} | ok {self.done} | failed {self.failed} | "
                f"{rate:.0f} clips/h | ETA {eta}" + (f" | in or waiting for: {queue}" if queue and left else ""))

    def clip_finished(self, failed: bool) -> None:
        with self._lock:
            if failed:
                self.failed += 1
            else:
                self.done += 1
            self._show(force=self.already + self.done + self.failed == self.total)

    def set_waiting(self, waiting: dict[str, int]) -> None:
        with self._lock:
            self.waiting = dict(waiting)
            self._show()

    def close(self) -> None:
        with self._lock:
            if self.live:
                self.stream.write("\n")
                self.stream.flush()

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.live:
            self.stream.write("\r\033[K" + self.text())
            self.stream.flush()
        elif force or now - self._printed >= self.every_s:
            self._printed = now
            log.info("%s", self.text())
