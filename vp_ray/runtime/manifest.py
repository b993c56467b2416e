"""The run's ledger: every input record ends as one manifest row or one failure row.

The driver feeds it the rows streaming out of the pipeline. The rows do not stay in the driver's
memory: every ``SPILL_ROWS`` of them go to a Parquet part file under ``<output_dir>/.ledger/``
(written atomically); the driver keeps only the ids it has seen (nothing twice) and counts by status.
At the end (or on Ctrl-C) the parts are merged, one at a time, into ``manifest.parquet`` (clips with
complete outputs, including those done by an earlier run of the same output_dir) and
``failures.parquet`` (clips that failed in this run), both written atomically. The parts stay until
the next ledger of the output folder starts (``launch.py`` drops them once its summary is printed):
a driver killed mid-run leaves parts that name no more than the clip folders a resume finds.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vp_ray.clip import outputs
from vp_ray.clip.atomic import atomic_path
from vp_ray.clip.records import ClipRecord
from vp_ray.clip.rows import (
    DONE_BEFORE,
    FAILED,
    OK,
    SUSPECT,
    ClipStatus,
    coerce,
    new_row,
    rows_to_frame,
)
from vp_ray.config import QAConfig
from vp_ray.evaluation import qa as quality
from vp_ray.review import store as review_store

if TYPE_CHECKING:
    from vp_ray.stages import ClipSettings

LEDGER_DIR = ".ledger"
SPILL_ROWS = 500  # rows held in the driver's memory before they go to a part file
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


_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
_FIELD_TYPES = {f.name: _ARROW_TYPES[f.type] for f in dataclasses.fields(ClipRecord) + dataclasses.fields(ClipStatus)}
# The tables' types, whatever the rows of any one part hold (a column of nulls is still a column of text).
MANIFEST_SCHEMA = pa.schema([(name, _FIELD_TYPES.get(name, pa.string())) for name in MANIFEST_COLUMNS])
FAILURE_SCHEMA = pa.schema([(name, _FIELD_TYPES[name]) for name in FAILURE_COLUMNS])
_BLANK_ROW = new_row(ClipRecord(clip_id="", video_path=""))


class Ledger:
    """``qa``: the run's quality thresholds (``cfg.qa``). Every finished clip, also one done by an
    earlier run, is judged with them from its stored scores: ``suspect`` over one (in the manifest,
    ``suspect`` wins over ``done_before``), its ``qa_flags`` naming which.

    A new ledger drops the parts an earlier one left in ``output_dir`` (see the module's docstring)."""

    def __init__(self, output_dir: str, mask_only: bool = False, qa: QAConfig | None = None):
        self.output_dir, self.mask_only, self.qa = output_dir, mask_only, qa
        self.folder = Path(output_dir) / LEDGER_DIR
        self.seen: set[str] = set()
        self.repeated: set[str] = set()
        self.counts: Counter = Counter()  # rows taken, by status: ok, suspect, done_before, failed
        self._held: list[dict[str, Any]] = []
        self._parts = 0
        self.discard()

    @property
    def done_count(self) -> int:
        return self.counts[OK] + self.counts[SUSPECT] + self.counts[DONE_BEFORE]

    @property
    def failed_count(self) -> int:
        return self.counts[FAILED]

    def add(self, row: dict[str, Any]) -> None:
        row = coerce(row)
        if row["status"] == FAILED:
            pass
        elif row["status"] == DONE_BEFORE:
            meta = outputs.read_meta(self.output_dir, row["clip_id"]) or {}
            row = self._judged({**row, **{k: v for k, v in meta.items() if k in MANIFEST_COLUMNS},
                                "status": DONE_BEFORE,
                                "output_dir": str(outputs.clip_dir(self.output_dir, row["clip_id"]))})
        elif row["status"] in (OK, SUSPECT):
            row = self._judged(row)
        else:
            raise ValueError(f"clip {row['clip_id']!r} left the pipeline with status {row['status']!r}")
        self._take(row)

    def carry(self, row: dict[str, Any]) -> None:
        """A row of an earlier manifest (status ``done_before``) or failures table (``failed``), kept as
        it is: a requeue run leaves the clips it does not redo alone."""
        row = coerce(row)
        self._take(row if row["status"] == FAILED else self._judged(row))

    def _take(self, row: dict[str, Any]) -> None:
        if row["clip_id"] in self.seen:
            self.repeated.add(row["clip_id"])
        self.seen.add(row["clip_id"])
        self.counts[row["status"]] += 1
        self._held.append(row)
        if len(self._held) >= SPILL_ROWS:
            self._spill()

    def _spill(self) -> None:
        """The rows held, to the next part file (in the rows' own schema, whatever keys each holds)."""
        if not self._held:
            return
        frame = rows_to_frame([{**_BLANK_ROW, **row} for row in self._held])
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"part-{self._parts:06d}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        self._parts += 1
        self._held = []

    def _part_paths(self) -> list[Path]:
        self._spill()
        return sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []

    def table(self, kind: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """The rows taken so far, in the order taken, read back from the part files: ``kind`` "done"
        (finished clips, also those done before), "failed", or None for both; ``columns`` (a few, for a
        long run) or every column of a row."""
        wanted = None if columns is None else list(dict.fromkeys(["status", *columns]))
        parts = [pd.read_parquet(path, columns=wanted) for path in self._part_paths()]
        frame = pd.concat(parts, ignore_index=True) if parts else rows_to_frame([])[wanted or slice(None)]
        if kind is not None:
            frame = frame[(frame.status == FAILED) == (kind == "failed")].reset_index(drop=True)
        return frame if columns is None else frame[columns]

    def add_committed(self, settings: ClipSettings) -> int:
        """Add the clips whose folders are committed, complete and of these settings, but whose
        rows never reached the driver (an interrupted run): what a resume would find done."""
        clips = Path(self.output_dir) / "clips"
        added = 0
        for meta_path in sorted(clips.glob(f"*/{outputs.META}")) if clips.is_dir() else []:
            clip_id = meta_path.parent.name
            if clip_id in self.seen:
                continue
            meta = outputs.read_meta(self.output_dir, clip_id)
            if meta is None or meta.get("status") not in (OK, SUSPECT):
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

    def duplicates(self) -> list[str]:
        """Ids seen more than once: must stay empty (nothing twice)."""
        return sorted(self.repeated)

    def write(self) -> tuple[Path, Path]:
        """``manifest.parquet`` and ``failures.parquet`` from the part files, one part in memory at a time."""
        reviews = review_store.verdicts(self.output_dir)
        out = Path(self.output_dir)
        manifest_path, failures_path = out / "manifest.parquet", out / "failures.parquet"
        with atomic_path(manifest_path) as manifest_tmp, atomic_path(failures_path) as failures_tmp, \
                pq.ParquetWriter(manifest_tmp, MANIFEST_SCHEMA) as manifest, \
                pq.ParquetWriter(failures_tmp, FAILURE_SCHEMA) as failures:
            for path in self._part_paths():
                rows = pd.read_parquet(path)
                failed = rows.status == FAILED
                done = [self._manifest_row(r, reviews) for r in rows[~failed].to_dict("records")]
                manifest.write_table(pa.Table.from_pandas(pd.DataFrame(done, columns=MANIFEST_COLUMNS),
                                                          schema=MANIFEST_SCHEMA, preserve_index=False))
                failures.write_table(pa.Table.from_pandas(rows.loc[failed, FAILURE_COLUMNS], schema=FAILURE_SCHEMA,
                                                          preserve_index=False))
        return manifest_path, failures_path

    def discard(self) -> None:
        """Remove the part files (once the tables are written and read)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self._parts = 0

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
