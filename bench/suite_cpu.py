"""Where the test suite's CPU goes: a pytest plugin that reads the whole machine's busy time
(``/proc/stat``) around each test, its setup and teardown included, so the Ray workers, actors and
runs a test starts are counted with it.

    PYTHONPATH=bench python -m pytest -q -p no:cacheprovider -p suite_cpu [tests ...]

Machine: Linux (``/proc/stat``); run it with nothing else busy, or the others' time is counted too.
At the end it prints the machine's CPU seconds and wall seconds of all tests, the costliest tests and
files, and writes every test's figures to ``SUITE_CPU_OUT`` (default ``bench/runs/suite_cpu.json``).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

TOP = 30
ROWS: list[tuple[str, float, float]] = []  # (test id, wall s, machine CPU s)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def pytest_configure(config):
    if not Path("/proc/stat").is_file():
        raise pytest.UsageError("suite_cpu needs Linux's /proc/stat")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    busy, began = machine_busy_seconds(), time.monotonic()
    yield
    ROWS.append((item.nodeid, time.monotonic() - began, machine_busy_seconds() - busy))


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    write = terminalreporter.write_line
    wall, cpu = sum(row[1] for row in ROWS), sum(row[2] for row in ROWS)
    write(f"suite_cpu: {len(ROWS)} tests, {cpu:.0f} CPU-s of the machine in {wall:.0f} s of tests")
    write(f"the {TOP} costliest tests (CPU-s, wall s):")
    for nodeid, seconds, busy in sorted(ROWS, key=lambda row: -row[2])[:TOP]:
        write(f"  {busy:6.1f} {seconds:6.1f}  {nodeid}")
    per_file = Counter()
    for nodeid, _, busy in ROWS:
        per_file[nodeid.split("::")[0]] += busy
    write("per file (CPU-s):")
    for path, busy in per_file.most_common(10):
        write(f"  {busy:6.1f}  {path}")
    out = Path(os.environ.get("SUITE_CPU_OUT", "bench/runs/suite_cpu.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{"test": n, "wall_s": round(w, 2), "cpu_s": round(c, 2)} for n, w, c in ROWS],
                              indent=1))
    write(f"suite_cpu: every test's figures in {out}")
