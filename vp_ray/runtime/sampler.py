"""What a run holds while it runs, sampled on the driver: its memory, Ray's object store, and the
clips whose intermediate files wait in ``<output_dir>/.work`` (what backpressure bounds).

Written to ``<output_dir>/run_samples.csv`` (one line per sample, appended as it goes), so a long
run can be watched with ``tail -f`` and plotted afterwards.
"""

from __future__ import annotations

import csv
import os
import resource
import threading
import time
from pathlib import Path
from typing import Callable

from vp_ray.clip.workdir import MASKS, RESULT
from vp_ray.runtime.backpressure import HOLDING

FIELDS = ["time_s", "driver_rss_mb", "driver_peak_rss_mb", "object_store_used_mb", "work_clips", "work_mb",
          "waiting_prepare", "waiting_inpaint", "waiting_write", "prepare_held", "model_held"]


def driver_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def work_usage(work: Path) -> tuple[int, float, dict[str, int]]:
    """(clips, MiB, clips per stage they are in or wait for) under the work folder.

    A clip's files say where it is: no masks yet -> being prepared or segmented; masks but no
    result -> waiting for (or in) inpainting; a result -> waiting for (or in) the write stage.
    """
    clips, size = 0, 0
    stages = {"prepare": 0, "inpaint": 0, "write": 0}
    for clip in (work.iterdir() if work.is_dir() else []):
        clips += 1
        names = set()
        try:
            for entry in os.scandir(clip):
                names.add(entry.name)
                size += entry.stat().st_size
        except FileNotFoundError:  # removed while we looked: the clip just finished
            continue
        stage = "write" if RESULT in names else "inpaint" if MASKS in names else "prepare"
        stages[stage] += 1
    return clips, size / 2**20, stages


def object_store_used_mb() -> float:
    import ray

    total = ray.cluster_resources().get("object_store_memory", 0)
    free = ray.available_resources().get("object_store_memory", total)
    return (total - free) / 2**20


class Sampler:
    """A daemon thread appending one sample every ``every_s`` seconds until ``stop()``."""

    def __init__(self, output_dir: str | os.PathLike, every_s: float,
                 on_sample: Callable[[dict[str, int]], None] | None = None):
        self.path = Path(output_dir) / "run_samples.csv"
        self.work = Path(output_dir) / ".work"
        self.every_s = every_s
        self.on_sample = on_sample  # given the clips waiting per stage after each sample
        self.start = time.monotonic()
        self.peak_work_clips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vp_ray-sampler", daemon=True)

    def __enter__(self) -> "Sampler":
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerow(FIELDS)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.sample()
        except Exception:  # noqa: BLE001 - never hide the run's own outcome behind a lost sample
            pass

    def sample(self) -> None:
        clips, size, waiting = work_usage(self.work)
        self.peak_work_clips = max(self.peak_work_clips, clips)
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        row = [round(time.monotonic() - self.start, 2), round(driver_rss_mb(), 1), round(peak_rss, 1),
               round(object_store_used_mb(), 1), clips, round(size, 1), *waiting.values(),
               int(HOLDING["prepare"]), int(HOLDING["model"])]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)
        if self.on_sample is not None:
            self.on_sample(waiting)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a lost sample must never stop the run
                pass
