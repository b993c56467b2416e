"""Keep what RESULTS.md cites of a run: one small JSON per run in bench/results/, the raw files out of git.

    python bench/compact_run.py OUT [--name NAME]     # writes bench/results/NAME.json (default: OUT's name)

Machine: any (pandas, pyarrow). OUT is what a bench script wrote (a shell script's OUT, or a
folder of a Python script's reports). Kept, by file name under OUT:

* every ``*.json`` (the scripts' own reports and clips' meta.json), as written;
* ``gpu.txt``, ``report*.txt`` and ``*summary*.txt``, as text;
* each ``manifest*.parquet``: per clip the columns the figures come from (up to 16 clips; beyond,
  counts and aggregates); each ``failures*.parquet`` row;
* driver samples (``samples*.csv``, ``run_samples*.csv``): first, last and largest values;
* ``nvidia-smi dmon`` files (``*dmon*.txt``): per GPU the samples, the share at SM >= 95 %, peak memory;
* from ``*.log``, the lines that say what happened: the memory plan auto chose, OOMs, exit codes,
  wall times, the bench tables' result lines, the last line of a traceback, and the summary table
  a ``launch.py`` run ends with.

Anything else (videos, checkpoints) is left out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import _common

_common.require_modules("pandas", "pyarrow")

import pandas as pd  # noqa: E402

RESULTS = _common.REPO / "bench" / "results"
CLIP_COLUMNS = ["clip_id", "status", "mask_kind", "num_frames", "attempts", "degraded", "effective_max_seconds",
                "memory_plan", "attention_backend", "compiled", "peak_gpu_mem_gb", "inpaint_worker",
                "segment_worker", "time_prepare_s", "time_segment_s", "time_inpaint_s", "time_write_s",
                "step_s_median", "step_s_max", "inpaint_started", "inpaint_finished", "gpu_started",
                "denoise_started", "denoise_finished", "gpu_finished", "time_load_s", "time_condition_s",
                "time_prompt_s", "time_encode_s", "time_decode_s", "time_convert_s", "time_save_s", "warnings"]
MAX_CLIPS = 16
LOG_LINE = re.compile(r"memory=auto|attention: |in force: |compiled blocks: |out of memory|OOM|exit \d+ wall|"
                      r"run: exit|wall:|wall \d|exact step ratio|exact clip ratio|GPU idle between clips|"
                      r"stock end to end|^batch job|scheduling efficiency|steady state|placement check|"
                      r"^\w*Error: |^cap \d|^plan: |import\+ray.init|^(untiled|1x2|2x2|3x3) |t5 resident")
RULE = re.compile(r"-{10,}")
MAX_LOG_LINES = 40
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def manifest_summary(path: Path) -> dict:
    frame = pd.read_parquet(path)
    columns = [c for c in CLIP_COLUMNS if c in frame]
    if len(frame) <= MAX_CLIPS:
        return {"clips": json.loads(frame[columns].to_json(orient="records", double_precision=6))}
    workers = frame.inpaint_worker.str.extract(r"node=(\S+) gpu=(\S+) pid=(\d+)")
    finished = frame.inpaint_finished.sort_values()
    return {"rows": len(frame), "status": frame.status.value_counts().to_dict(),
            "inpaint_actors": int(workers[2].nunique()), "nodes": int(workers[0].nunique()),
            "time_inpaint_s": frame.time_inpaint_s.describe().round(3).to_dict(),
            "peak_gpu_mem_gb_max": float(frame.peak_gpu_mem_gb.max()),
            "first_started": float(frame.inpaint_started.min()), "last_finished": float(finished.iloc[-1]),
            **{column: frame[column].value_counts(dropna=False).to_dict()
               for column in ("memory_plan", "compiled") if column in frame}}


def samples_summary(path: Path) -> dict:
    frame = pd.read_csv(path)
    return {"samples": len(frame), "first": frame.iloc[0].to_dict(), "last": frame.iloc[-1].to_dict(),
            "max": frame.max().to_dict()}


def dmon_summary(path: Path) -> dict:
    """Per GPU: samples, share of samples at SM >= 95 %, peak memory used (MiB)."""
    header, per_gpu = None, {}
    for line in path.read_text().splitlines():
        if line.startswith("#Time") or line.startswith("# gpu"):
            header = line[1:].split()
        elif header and line.strip() and not line.startswith("#"):
            values = dict(zip(header, line.split()))
            gpu = per_gpu.setdefault(values.get("gpu", "?"), {"samples": 0, "sm_ge_95": 0, "fb_mib_max": 0.0})
            gpu["samples"] += 1
            gpu["sm_ge_95"] += values.get("sm", "-") != "-" and float(values["sm"]) >= 95
            if values.get("fb", "-") != "-":
                gpu["fb_mib_max"] = max(gpu["fb_mib_max"], float(values["fb"]))
    for gpu in per_gpu.values():
        gpu["sm_ge_95_share"] = round(gpu.pop("sm_ge_95") / max(gpu["samples"], 1), 3)
    return per_gpu


def log_lines(path: Path) -> list[str]:
    lines = [ANSI.sub("", line).strip()[:500] for line in path.read_text(errors="replace").splitlines()]
    rules = [index for index, line in enumerate(lines) if RULE.fullmatch(line)]
    summary = lines[rules[-2] + 1:rules[-1]] if len(rules) >= 2 else []
    return [line for line in lines if LOG_LINE.search(line) and line not in summary][:MAX_LOG_LINES] + summary


def compact(out: Path) -> dict:
    kept: dict = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name, key = path.name, str(path.relative_to(out))
        if name.endswith(".json"):
            kept[key] = json.loads(path.read_text())
        elif name == "gpu.txt" or (name.endswith(".txt") and ("report" in name or "summary" in name)):
            kept[key] = path.read_text().strip()
        elif name.endswith(".parquet") and "manifest" in name:
            kept[key] = manifest_summary(path)
        elif name.endswith(".parquet") and "failures" in name:
            kept[key] = pd.read_parquet(path).to_dict("records")
        elif name.endswith(".csv") and "samples" in name:
            kept[key] = samples_summary(path)
        elif name.endswith(".txt") and "dmon" in name:
            kept[key] = dmon_summary(path)
        elif name.endswith(".log"):
            kept[key] = log_lines(path)
    return kept


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("out", type=Path, help="the run's folder")
    parser.add_argument("--name", default=None, help="results file name (default: OUT's folder name)")
    args = parser.parse_args()
    if not args.out.is_dir():
        _common.refuse(f"{args.out} is not a folder")
    path = _common.write_json(RESULTS / f"{args.name or args.out.resolve().name}.json", compact(args.out))
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
