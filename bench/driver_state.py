"""The driver's own per-clip state at 100,000 clips, without the pipeline: N finished rows through what
the driver does with each (``Ledger.add``, ``RunMetrics.record``, the status line), then what it does
at the end (``manifest.parquet`` and ``failures.parquet`` from the ledger's parts, the summary, the
report), with the driver's RSS read in this process.

    python bench/driver_state.py --rows 100000 [--failed-every 50] [--out DIR]

Machine: CPUs only; the project's packages. About a minute for 100,000 rows on a 2-core machine.

What it covers and what it leaves out: the rows are made here (a sim clip's columns and value kinds:
timeline, stage times, quality scores, two inpainting workers, every ``--failed-every``-th row a
failure with a 200-character error), not produced by Ray Data, so Ray Data's own state in the driver
(its iterator, its per-block statistics) is not in these figures: ``bench/driver_memory.py`` measures
the driver of a whole run, Ray Data included, at the rows this machine can finish in a session.
Ray runs (one local instance, no dashboard) so that the metrics are recorded as in a run.

    driver KiB per finished clip = the least-squares slope of RSS against rows taken, from a tenth
                                   of the rows on

then the RSS after each step of the end, and the process's peak RSS so far (MiB): ``manifest``
(``Ledger.write``), ``summary``, ``report`` (``report.html``; its thumbnails find no clip folders
here: a fixed cost either way).
Prints one JSON line (also ``<out>/driver_state.json``).
"""

from __future__ import annotations

import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

import _common
from driver_memory import MILESTONES, slope

WORKERS = ("node=0a1b2c3d gpu=0 pid=4101", "node=0a1b2c3d gpu=1 pid=4102")


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--failed-every", type=int, default=50, help="every N-th row a failure (0: none)")
    parser.add_argument("--out", default=None, help="folder for the run (default: a temporary one)")
    args = parser.parse_args()
    if args.rows < 10:
        _common.refuse("--rows must be at least 10")
    _common.require_modules("ray", "pandas", "pyarrow", "matplotlib")
    import ray

    from vp_ray.clip.records import ClipRecord
    from vp_ray.clip.rows import new_row
    from vp_ray.config import QAConfig
    from vp_ray.runtime.console import StatusLine
    from vp_ray.runtime.graph import RunResult, start_local
    from vp_ray.runtime.manifest import Ledger
    from vp_ray.runtime.report import write_report
    from vp_ray.runtime.summary import format_summary
    from vp_ray.runtime.telemetry import RunMetrics

    out = Path(args.out or tempfile.mkdtemp(prefix="vp-ray-driver-state-"))
    start_local({"num_cpus": 1, "include_dashboard": False, "log_to_driver": False})
    began = time.perf_counter()
    rng = random.Random(0)
    ledger = Ledger(str(out), qa=QAConfig())
    metrics = RunMetrics("sim")
    with open(os.devnull, "w") as devnull:
        status = StatusLine(args.rows, 0, 60.0, stream=devnull)
        samples = [(0, rss_mib())]
        tenth = max(1, args.rows // 10)
        for index in range(args.rows):
            failed = args.failed_every > 0 and index % args.failed_every == args.failed_every - 1
            row = sim_row(new_row(ClipRecord(clip_id=f"clip{index:06d}", video_path=f"/data/clips/{index:06d}.mp4",
                                             prompt="a quiet street after the car has gone")),
                          index, failed, rng, out)
            ledger.add(row)
            metrics.record(row)
            status.clip_finished(failed=failed)
            taken = index + 1
            if taken % tenth == 0 or taken in MILESTONES:
                samples.append((taken, rss_mib()))
        status.close()
    loop_s = time.perf_counter() - began
    end = {}
    manifest_path, failures_path = ledger.write()
    end["manifest"] = rss_and_peak_mib()
    format_summary(RunResult(ledger, 0, manifest_path, failures_path), str(out), loop_s)
    end["summary"] = rss_and_peak_mib()
    write_report(out, max_clips=48)
    end["report"] = rss_and_peak_mib()
    ledger.discard()
    ray.shutdown()
    tail = [(n, mib) for n, mib in samples if n >= tenth]
    result = {
        "rows": args.rows, "failed_every": args.failed_every, "loop_s": round(loop_s, 1),
        "rss_mib_at_milestones": {n: round(mib, 1) for n, mib in samples if n in MILESTONES},
        "rss_mib_at_tenths": {n: round(mib, 1) for n, mib in samples if n and n % tenth == 0},
        "driver_kib_per_finished_clip": round(slope(tail) * 1024, 2),
        "rss_mib_after_end_steps": {step: round(mib, 1) for step, (mib, _) in end.items()},
        "peak_rss_mib_after_end_steps": {step: round(peak, 1) for step, (_, peak) in end.items()},
        "end_s": round(time.perf_counter() - began - loop_s, 1),
        "folder": str(out),
    }
    _common.write_json(out / "driver_state.json", result)
    print(f"driver KiB per finished clip (the driver's own state, rows made here): "
          f"{result['driver_kib_per_finished_clip']}")
    print(json.dumps(result))


def sim_row(row: dict, index: int, failed: bool, rng, out: Path) -> dict:
    """``row`` as the last stage gives back a sim clip: finished (the scores in their usual ranges) or
    failed at prepare."""
    if failed:
        return {**row, "status": "failed", "failed_stage": "prepare", "error_type": "BadVideo",
                "error": f"clip {row['clip_id']!r}: cannot decode {row['video_path']}: " + "x" * 140,
                "attempts": 1}
    started = 1.8e9 + index * 0.25
    worker = WORKERS[index % len(WORKERS)]
    return {
        **row, "status": "ok", "output_dir": str(out / "clips" / row["clip_id"]), "work_dir": "",
        "source_width": 64, "source_height": 48, "source_fps": 8.0, "num_frames": 9, "out_fps": 8.0,
        "seconds": 1.125, "mask_area": rng.uniform(0.05, 0.3), "effective_seed": 42,
        "effective_max_seconds": 6.0, "attempts": 1, "inpaint_worker": worker,
        "time_prepare_s": rng.uniform(0.05, 0.2), "time_inpaint_s": rng.uniform(0.2, 0.3),
        "time_write_s": rng.uniform(0.08, 0.2), "step_s_median": 0.02, "step_s_max": 0.03,
        "inpaint_started": started, "gpu_started": started + 0.001, "denoise_started": started + 0.002,
        "denoise_finished": started + 0.2, "gpu_finished": started + 0.21, "inpaint_finished": started + 0.22,
        "time_load_s": 0.004, "time_save_s": 0.01, "qa_drift": rng.uniform(0, 0.05),
        "qa_flicker": rng.uniform(0, 0.05), "qa_seam": rng.uniform(0, 0.3), "qa_object": rng.uniform(0, 0.5),
    }


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_and_peak_mib() -> tuple[float, float]:
    """RSS now and the most it has been (MiB): a step that raised the peak shows it in the second."""
    return rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
