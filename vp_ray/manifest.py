"""The run's ledger: every input record ends as one manifest row or one failure row.

The driver feeds it the rows streaming out of the pipeline. At the end (or on Ctrl-C)
it writes ``manifest.parquet`` (clips with complete outputs, including those done by
an earlier run of the same output_dir) and ``failures.parquet`` (clips that failed in
this run). Both are written atomically.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from vp_ray import outputs
from vp_ray.atomic import atomic_path
from vp_ray.config import QAConfig
from vp_ray.evaluation import qa as quality
from vp_ray.review import store as review_store
from vp_ray.rows import DONE_BEFORE, FAILED, OK, SUSPECT, coerce

if TYPE_CHECKING:
    from vp_ray.stages import ClipSettings

MANIFEST_COLUMNS = [
    "clip_id", "status", "video_path", "prompt", "mask_kind", "output_dir", "result_path",
    "num_frames", "out_fps", "seconds", "source_width", "source_height", "source_fps",
    "effective_seed", "effective_max_seconds", "attempts", "degraded", "peak_gpu_mem_gb", "memory_plan",
    "attention_backend", "compiled",
    "segment_worker", "inpaint_worker",
    "mask_area", "warnings", "time_prepare_s", "time_segment_s", "time_inpaint_s", "time_write_s",
    "step_s_median", "step_s_max", "inpaint_started", "inpaint_finished",
    "gpu_started", "denoise_started", "denoise_finished", "gpu_finished", "time_load_s", "time_condition_s",
    "time_prompt_s", "time_encode_s", "time_decode_s", "time_convert_s", "time_save_s",
    *quality.SCORES, "qa_flags",
    # The review's verdict (accepted, rejected, requeued) and requeue state (pending, done, failed) of
    # the clip in review.parquet when the manifest was written ("": not reviewed); README, "Review".
    "review_verdict", "review_requeue",
]
FAILURE_COLUMNS = ["clip_id", "failed_stage", "error_type", "error", "video_path", "warnings"]


@dataclass
class Ledger:
    """``qa``: the run's quality thresholds (``cfg.qa``). Every finished clip, also one done by an
    earlier run, is judged with them from its stored scores: ``suspect`` over one (in the manifest,
    ``suspect`` wins over ``done_before``), its ``qa_flags`` naming which."""

    output_dir: str
    mask_only: bool = False
    qa: QAConfig | None = None
    done: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    seen: Counter = field(default_factory=Counter)

    def add(self, row: dict[str, Any]) -> None:
        row = coerce(row)
        self.seen[row["clip_id"]] += 1
        if row["status"] == FAILED:
            self.failed.append(row)
        elif row["status"] == DONE_BEFORE:
            meta = outputs.read_meta(self.output_dir, row["clip_id"]) or {}
            self.done.append(self._judged({**row, **{k: v for k, v in meta.items() if k in MANIFEST_COLUMNS},
                                           "status": DONE_BEFORE,
                                           "output_dir": str(outputs.clip_dir(self.output_dir, row["clip_id"]))}))
        elif row["status"] in (OK, SUSPECT):
            self.done.append(self._judged(row))
        else:
            raise ValueError(f"clip {row['clip_id']!r} left the pipeline with status {row['status']!r}")

    def carry(self, row: dict[str, Any]) -> None:
        """A row of an earlier manifest (status ``done_before``) or failures table (``failed``), kept as
        it is: a requeue run leaves the clips it does not redo alone."""
        row = coerce(row)
        self.seen[row["clip_id"]] += 1
        (self.failed if row["status"] == FAILED else self.done).append(
            row if row["status"] == FAILED else self._judged(row))

    def add_committed(self, settings: ClipSettings) -> int:
        """Add the clips whose folders are committed, complete and of these settings, but whose
        rows never reached the driver (an interrupted run): what a resume would find done."""
        clips = Path(self.output_dir) / "clips"
        added = 0
        for meta_path in sorted(clips.glob(f"*/{outputs.META}")) if clips.is_dir() else []:
            clip_id = meta_path.parent.name
            meta = outputs.read_meta(self.output_dir, clip_id)
            if clip_id in self.seen or meta is None or meta.get("status") not in (OK, SUSPECT):
                continue
            if outputs.is_complete(self.output_dir, clip_id, settings.fingerprint(meta)):
                self.add(meta)
                added += 1
        return added

    def _judged(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with ``qa_flags`` (and, unless done before, its status) by this run's thresholds."""
        if self.qa is None:
            return row
        flags = quality.judge(row, self.qa)
        row["qa_flags"] = ",".join(flags)
        if row["status"] != DONE_BEFORE:
            row["status"] = SUSPECT if flags else OK
        return row

    def suspects(self) -> list[dict[str, Any]]:
        """The finished clips with a quality score over its threshold (new or done before)."""
        return [row for row in self.done if row.get("qa_flags")]

    def duplicates(self) -> list[str]:
        """Ids seen more than once: must stay empty (nothing twice)."""
        return sorted(k for k, v in self.seen.items() if v > 1)

    def write(self) -> tuple[Path, Path]:
        reviews = review_store.verdicts(self.output_dir)
        manifest = pd.DataFrame([self._manifest_row(r, reviews) for r in self.done], columns=MANIFEST_COLUMNS)
        for column in quality.SCORES:  # null where not measured (also in a table of old clips only)
            manifest[column] = manifest[column].astype("float64")
        failures = pd.DataFrame([{k: r[k] for k in FAILURE_COLUMNS} for r in self.failed],
                                columns=FAILURE_COLUMNS)
        return (_write_parquet(manifest, Path(self.output_dir) / "manifest.parquet"),
                _write_parquet(failures, Path(self.output_dir) / "failures.parquet"))

    def _manifest_row(self, row: dict[str, Any], reviews: dict[str, tuple[str, str]]) -> dict[str, Any]:
        out = {k: row.get(k) for k in MANIFEST_COLUMNS}
        out["review_verdict"], out["review_requeue"] = reviews.get(row["clip_id"], ("", ""))
        out["result_path"] = "" if self.mask_only else str(Path(row["output_dir"]) / "result.mp4")
        out["memory_plan"] = row.get("memory_plan") or None   # null: a model without memory plans
        out["attention_backend"] = row.get("attention_backend") or None
        out["compiled"] = row.get("compiled") or None         # null: a model that does not compile
        out["qa_flags"] = row.get("qa_flags") or ""
        if out["qa_flags"]:
            out["status"] = SUSPECT
        return out


def _write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path
