"""The table printed at the end of a run."""

from __future__ import annotations

from collections import Counter

from vp_ray.gpu_idle import idle_summary
from vp_ray.graph import RunResult
from vp_ray.rows import DONE_BEFORE


def per_actor(rows: list[dict], column: str) -> str:
    """What the inpainting actors ran their clips with (``column``: the memory plan, the attention
    kernel), and how many actors each: "text_encoder_offload + large VAE tiles (2 actors)"; "" for
    models without one."""
    actors: dict[str, set[str]] = {}
    for row in rows:
        if row.get(column):
            actors.setdefault(row[column], set()).add(row["inpaint_worker"])
    return "; ".join(f"{plan} ({len(workers)} actor{'s' * (len(workers) != 1)})"
                     for plan, workers in sorted(actors.items()))


def suspect_counts(suspects: list[dict]) -> str:
    """How many clips are suspect, and by which score: "3 (seam 2, object 1)"."""
    flags = Counter(flag for row in suspects for flag in row["qa_flags"].split(","))
    by_score = ", ".join(f"{flag} {count}" for flag, count in flags.most_common())
    return f"{len(suspects)} ({by_score})" if suspects else "0"


def format_summary(result: RunResult, output_dir: str, wall_seconds: float) -> str:
    ledger = result.ledger
    new = [r for r in ledger.done if r["status"] != DONE_BEFORE]
    inpaint_times = [r["time_inpaint_s"] for r in new if r["time_inpaint_s"]]
    per_clip = sum(inpaint_times) / len(inpaint_times) if inpaint_times else 0.0
    plans, kernels = per_actor(new, "memory_plan"), per_actor(new, "attention_backend")
    compiled = per_actor(new, "compiled")
    idle = idle_summary(new)
    lines = [
        ("clips ok (this run)", str(len(new))),
        ("clips done before (resumed)", str(len(ledger.done) - len(new))),
        ("clips failed", str(len(ledger.failed))),
        ("clips degraded (shortened after OOM)", str(sum(bool(r["degraded"]) for r in new))),
        ("clips suspect (quality scores)", suspect_counts(ledger.suspects())),
        ("inpaint seconds per clip (mean)", f"{per_clip:.2f}"),
        *([("memory plan", plans)] if plans else []),
        *([("attention kernel", kernels)] if kernels else []),
        *([("compiled blocks", compiled)] if compiled else []),
        *([("GPU idle between clips", idle)] if idle else []),
        ("wall time", f"{wall_seconds:.1f} s"),
        ("manifest", str(result.manifest_path)),
        ("failures", str(result.failures_path)),
        *([("report", str(result.report_path))] if result.report_path else []),
        ("output dir", output_dir),
    ]
    causes = Counter((r["failed_stage"], r["error_type"]) for r in ledger.failed)
    for (stage, kind), count in sorted(causes.items()):
        lines.insert(3, (f"  failed at {stage}: {kind}", str(count)))
    if causes:
        (stage, kind), count = causes.most_common(1)[0]
        example = next(r["error"] for r in ledger.failed if (r["failed_stage"], r["error_type"]) == (stage, kind))
        lines.append(("most common failure", f"{kind} at {stage} ({count} clip(s)), e.g. {example[:300]}"))
    if ledger.failed and not ledger.done:
        lines.append(("ALL CLIPS FAILED", "see the most common failure above and failures.parquet"))
    if result.interrupted:
        lines.append(("INTERRUPTED", "run the same command again to resume"))
    width = max(len(k) for k, _ in lines)
    rule = "-" * min(100, width + 2 + max(len(v) for _, v in lines))
    return "\n".join([rule] + [f"{k:<{width}}  {v}" for k, v in lines] + [rule])
