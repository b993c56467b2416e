"""Driver memory of the preflight against the number of rows: the dataset's one read (its checks and
the rows-to-do shards, ``todo.write_todo``) and the resume's check (``todo.skip_complete``), all the
driver does before Ray starts.

    python bench/preflight_memory.py 1000 10000 100000 1000000

Machine: CPUs only; the project's packages.

For each size, a child process writes a CSV of that many rows (generic layout, a click each), runs
the two and prints their peak RSS, the RSS they added and their times.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import _common

CHILD = """
import json, resource, sys, time
path, rows = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("clip_id,video_path,points\\n")
    for i in range(rows):
        f.write(f'clip{i:07d},videos/v{i % 97}.mp4,"[[10, 20, 1]]"\\n')
from vp_ray.runtime.todo import skip_complete, write_todo
from vp_ray.config import Config, DatasetConfig
from vp_ray.stages.lineup import run_context
import vp_ray.stages.read  # imported by skip_complete: counted before, not as the preflight's memory
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
cfg = Config(dataset=DatasetConfig(name="rows", path=path, default_prompt="x"), seed=0, output_dir=path + ".out")
plan = write_todo(cfg)
checked = time.perf_counter()
todo = skip_complete(cfg, run_context(cfg, plan), plan, print)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "total": plan.total, "pending": todo.pending,
                  "read_seconds": round(checked - start, 2), "skip_seconds": round(seconds - (checked - start), 2),
                  "peak_rss_mib": round(peak / 1024, 1), "added_mib": round((peak - before) / 1024, 1)}))
"""


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("rows", type=int, nargs="*", default=[1000, 10000, 100000, 1000000],
                        help="dataset sizes (default: 1000 10000 100000 1000000)")
    for rows in parser.parse_args().rows:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "clips.csv"), str(rows)],
                                  capture_output=True, text=True, check=True, cwd=_common.REPO)
            print(done.stdout.strip())


if __name__ == "__main__":
    main()
