"""The driver's memory against the clips it has finished: `launch.py model=sim` over an N-row Parquet
dataset of tiny clips, then the same command again (the resume of the finished run).

    python bench/driver_memory.py --rows 5000 [--gpus 2] [--clip-seconds 0.2] [--trace] [--out DIR]

Machine: CPUs only; the project's packages. On a 2-core machine about 4 clips/s: 1,000 rows take about
4 minutes, 5,000 about 20, 100,000 about 7 hours (7.5 with --trace).

The script watches the driver from outside (``/proc/<pid>/statm``) every ``--every`` seconds and counts
the clips committed so far (folders under ``<out>/clips``); it reports the driver's RSS when 1k, 10k,
50k and 100k clips were finished (those the rows allow) and at each tenth of the rows, and

    driver KiB per finished clip = the least-squares slope of RSS against finished clips, from a tenth
                                   of the rows on (Ray's and the model's start-up left out)

then the driver's peak RSS over the whole run (``peak_rss_mib_at_end``: the run's summary line, written
after the manifest and the report, which a look every few seconds can miss) and the resume's wall time
(every clip done: no Ray, no model). ``--trace`` runs the driver under
``tracemalloc`` (8 frames) in this script's own process tree and writes, at each tenth of the rows,
what grew since the tenth before, by allocating line with its callers (``trace.json``): what grows.

Prints one JSON line (also ``<out>/driver_memory.json``); the run folder stays under ``--out``
(default: a temporary folder), with each launch's samples in ``samples_<ns>.csv`` as they are taken.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common

MILESTONES = (1_000, 10_000, 50_000, 100_000)
TRACE_FRAMES = 6
TRACE_TOP = 25


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--gpus", type=int, default=2, help="logical GPUs: one sim actor each")
    parser.add_argument("--clip-seconds", type=float, default=0.2, help="sim model time per clip")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between two looks at the driver")
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the driver: what grows (slower)")
    parser.add_argument("--out", default=None, help="folder for the run (default: a temporary one)")
    parser.add_argument("--as-driver", nargs=2, help=argparse.SUPPRESS)  # (the traced driver's own process)
    args, launch_args = parser.parse_known_args()
    if args.as_driver:
        return traced_driver(Path(args.as_driver[0]), Path(args.as_driver[1]), args.rows, launch_args)
    if args.rows < 10:
        _common.refuse("--rows must be at least 10")
    _common.require_modules("ray", "hydra", "omegaconf", "av")

    folder = Path(args.out or tempfile.mkdtemp(prefix="vp-driver-memory-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    dataset = parquet_dataset(folder, args.rows)
    out = folder / "out"
    first = launch(args, dataset, out, folder / "trace.json" if args.trace else None)
    import pandas as pd

    ok, failed = len(pd.read_parquet(out / "manifest.parquet")), len(pd.read_parquet(out / "failures.parquet"))
    resume = launch(args, dataset, out, None)
    report = {"rows": args.rows, "format": "parquet", "gpus": args.gpus, "clip_seconds": args.clip_seconds,
              "traced": args.trace, "ok": ok, "failed": failed, **summarize(first["samples"], args.rows),
              "peak_rss_mib_at_end": first["peak_rss_mib"], "wall_s": first["wall_s"],
              "resume_wall_s": resume["wall_s"], "resume_skip": resume["skipped"],
              "folder": str(folder)}
    (folder / "driver_memory.json").write_text(json.dumps({**report, "samples": first["samples"]}))
    print(json.dumps(report))


def parquet_dataset(folder: Path, rows: int) -> Path:
    """``rows`` tiny clips (four 9-frame 48x64 videos, each used rows/4 times), as Parquet."""
    import pandas as pd
    from scale_sim import clips_csv

    path = folder / "clips.parquet"
    pd.read_csv(clips_csv(folder, rows)).to_parquet(path, index=False)
    return path


def launch(args, dataset: Path, out: Path, trace: Path | None) -> dict:
    """Run the user's command on ``dataset``, watching the driver's RSS against the finished clips."""
    from scale_sim import FRAMES

    overrides = [f"output_dir={out}", "dataset=parquet", f"dataset.path={dataset}", "model=sim",
                 f"model.seconds_per_frame={args.clip_seconds / FRAMES}", "model.height=48", "model.width=64",
                 "dilate_size=2", f"cluster.num_gpus={args.gpus}", f"cluster.num_cpus={args.gpus + 4}",
                 f"hydra.run.dir={out.parent / 'logs' / str(time.time_ns())}"]
    driver = [str(_common.REPO / "launch.py")] if trace is None else \
        [__file__, "--rows", str(args.rows), "--as-driver", str(trace), str(out / "clips")]
    # On a loaded machine Ray's dashboard agent can take minutes to start: the raylet waits for it.
    env = {"RAY_agent_register_timeout_ms": "600000", **os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
           "TQDM_DISABLE": "1"}
    log_path = out.parent / f"launch_{time.time_ns()}.log"
    samples: list[list[float]] = []
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *driver, *overrides], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=_common.REPO)
        watcher = threading.Thread(target=watch, args=(proc, out / "clips", args.every, samples,
                                                       out.parent / f"samples_{time.time_ns()}.csv"), daemon=True)
        watcher.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # the run stops as on Ctrl-C: its clips kept, its Ray stopped
            proc.wait()
            raise
        wall = time.perf_counter() - start
        watcher.join()
    if code != 0:
        sys.exit(f"launch.py exited {code}: see {log_path}")
    text = log_path.read_text()
    skipped = re.search(r"(\d+) clip\(s\) complete from an earlier run, skipped in ([\d.]+) s", text)
    # The summary's line is the last "driver peak RSS": the run's end (manifest, report) included.
    peak = re.findall(r"driver peak RSS\s+(\d+) MiB", text)
    return {"wall_s": round(wall, 1), "samples": samples, "peak_rss_mib": int(peak[-1]) if peak else None,
            "skipped": {"clips": int(skipped[1]), "seconds": float(skipped[2])} if skipped else None}


def watch(proc: subprocess.Popen, clips: Path, every: float, samples: list[list[float]], kept: Path) -> None:
    """(seconds, clips committed, driver RSS MiB) every ``every`` seconds while ``proc`` runs, also
    appended to ``kept`` as they come (what a run of hours leaves if it is stopped)."""
    start = time.monotonic()
    page = os.sysconf("SC_PAGE_SIZE")
    with open(kept, "w", buffering=1) as file:
        file.write("seconds,clips,rss_mib\n")
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/statm") as f:
                    rss = int(f.read().split()[1]) * page / 2**20
            except OSError:
                break
            samples.append([round(time.monotonic() - start, 1), committed(clips), round(rss, 1)])
            file.write(",".join(map(str, samples[-1])) + "\n")
            time.sleep(every)


def committed(clips: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(clips) if not entry.name.startswith("."))
    except FileNotFoundError:
        return 0


def summarize(samples: list[list[float]], rows: int) -> dict:
    """RSS at the milestones and at each tenth of the rows; the slope from a tenth of the rows on."""
    def rss_at(clips: int) -> float | None:
        return next((rss for _, done, rss in samples if done >= clips), None)

    tenths = {str(rows * k // 10): rss_at(rows * k // 10) for k in range(1, 11)}
    per_clip = slope([(done, rss) for _, done, rss in samples if done >= rows // 10])
    return {"rss_mb_at_milestones": {str(m): rss_at(m) for m in MILESTONES if m <= rows},
            "rss_mb_at_tenths": tenths,
            "rss_mb_first_last_max": [samples[0][2], samples[-1][2], max(s[2] for s in samples)] if samples else None,
            "driver_kib_per_finished_clip": round(per_clip * 1024, 2) if per_clip is not None else None}


def slope(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of MiB against clips (MiB per clip); None without two distinct clip counts."""
    n = len(points)
    if n < 2 or min(x for x, _ in points) == max(x for x, _ in points):
        return None
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    return (sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points))


def traced_driver(trace: Path, clips: Path, rows: int, launch_args: list[str]) -> None:
    """``launch.py`` in this process, under tracemalloc; at each tenth of the rows, what grew."""
    import importlib
    import runpy
    import tracemalloc

    # Imported before tracing starts: what the run adds is what counts.
    for module in ("ray.data", "vp_ray.runtime.graph", "vp_ray.runtime.summary"):
        importlib.import_module(module)

    tracemalloc.start(TRACE_FRAMES)
    steps, report = [rows * k // 10 for k in range(1, 11)], []

    def snapshots() -> None:
        previous = None
        for step in steps:
            while committed(clips) < step:
                time.sleep(2.0)
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            traced = sum(stat.size for stat in snapshot.statistics("filename")) / 2**20
            entry = {"clips": step, "traced_mb": round(traced, 1)}
            if previous is not None:
                entry["grew"] = [{"kib": round(stat.size_diff / 1024, 1), "count": stat.count_diff,
                                  "where": [f"{frame.filename}:{frame.lineno}" for frame in stat.traceback]}
                                 for stat in snapshot.compare_to(previous, "traceback")[:TRACE_TOP]]
            report.append(entry)
            trace.write_text(json.dumps(report, indent=1))
            previous = snapshot

    threading.Thread(target=snapshots, daemon=True).start()
    sys.argv = [str(_common.REPO / "launch.py"), *launch_args]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
