"""The table printed at the end of a run, from the ledger's rows (read back from its part files)."""

from __future__ import annotations

import resource
from collections import Counter

import pandas as pd

from vp_ray.clip.rows import DONE_BEFORE
from vp_ray.runtime.gpu_idle import TIMELINE_COLUMNS, idle_summary
from vp_ray.runtime.graph import RunResult

# What the summary reads of the finished clips' rows (the ledger's table; not every row's every column).
SUMMARY_COLUMNS = list(dict.fromkeys(["status", "time_inpaint_s", "degraded", "qa_flags", "memory_plan",
                                     "attention_backend", "compiled", *TIMELINE_COLUMNS]))


def per_actor(rows: pd.DataFrame, column: str) -> str:
    """What the inpainting actors ran their clips with (``column``: the memory plan, the attention
    kernel), and how many actors each: "text_encoder_offload + large VAE tiles (2 actors)"; "" for
    models without one."""
    actors = rows[rows[column] != ""].groupby(column)["inpaint_worker"].nunique()
    return "; ".join(f"{plan} ({workers} actor{'s' * (workers != 1)})" for plan, workers in sorted(actors.items()))


def suspect_counts(flags: pd.Series) -> str:
    """How many clips are suspect, and by which score: "3 (seam 2, object 1)" (``flags``: each finished
    clip's ``qa_flags``)."""
    suspects = flags[flags != ""]
    counts = Counter(flag for text in suspects for flag in text.split(","))
    by_score = ", ".join(f"{flag} {count}" for flag, count in counts.most_common())
    return f"{len(suspects)} ({by_score})" if len(suspects) else "0"


def format_summary(result: RunResult, output_dir: str, wall_seconds: float) -> str:
    ledger = result.ledger
    done = ledger.table("done", columns=SUMMARY_COLUMNS)
    failed = ledger.table("failed", columns=["failed_stage", "error_type", "error"])
    new = done[done.status != DONE_BEFORE]
    inpaint_times = new.time_inpaint_s[new.time_inpaint_s != 0]
    per_clip = float(inpaint_times.mean()) if len(inpaint_times) else 0.0
    plans, kernels = per_actor(new, "memory_plan"), per_actor(new, "attention_backend")
    compiled = per_actor(new, "compiled")
    idle = idle_summary(new)
    lines = [
        ("clips ok (this run)", str(len(new))),
        ("clips done before (resumed)", str(len(done) - len(new))),
        ("clips failed", str(len(failed))),
        ("clips degraded (shortened after OOM)", str(int(new.degraded.sum()))),
        ("clips suspect (quality scores)", suspect_counts(done.qa_flags)),
        ("inpaint seconds per clip (mean)", f"{per_clip:.2f}"),
        *([("memory plan", plans)] if plans else []),
        *([("attention kernel", kernels)] if kernels else []),
        *([("compiled (blocks; VAE)", compiled)] if compiled else []),
        *([("GPU idle between clips", idle)] if idle else []),
        ("wall time", f"{wall_seconds:.1f} s"),
        # The whole run's, the manifest, the report and this summary's reads included (README, "How it runs").
        ("driver peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"),
        ("manifest", str(result.manifest_path)),
        ("failures", str(result.failures_path)),
        *([("report", str(result.report_path))] if result.report_path else []),
        ("output dir", output_dir),
    ]
    causes = Counter(zip(failed.failed_stage, failed.error_type))
    for (stage, kind), count in sorted(causes.items()):
        lines.insert(3, (f"  failed at {stage}: {kind}", str(count)))
    if causes:
        (stage, kind), count = causes.most_common(1)[0]
        example = failed.error[(failed.failed_stage == stage) & (failed.error_type == kind)].iloc[0]
        lines.append(("most common failure", f"{kind} at {stage} ({count} clip(s)), e.g. {example[:300]}"))
    if len(failed) and not len(done):
        lines.append(("ALL CLIPS FAILED", "see the most common failure above and failures.parquet"))
    if result.interrupted:
        lines.append(("INTERRUPTED", "run the same command again to resume"))
    width = max(len(k) for k, _ in lines)
    rule = "-" * min(100, width + 2 + max(len(v) for _, v in lines))
    return "\n".join([rule] + [f"{k:<{width}}  {v}" for k, v in lines] + [rule])
