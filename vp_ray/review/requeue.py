"""What a run takes from the review of its output folder (``review.parquet``).

* Every run: a clip's edits replace its dataset values (``DatasetPlan.edits``), so that a clip redone
  with them is complete for the next run too (its fingerprint is of the edited record).
* ``review.requeue=true``: only the requeued clips run (``DatasetPlan.redo``), even where their folder
  is complete for the run's settings; every other clip keeps its folder, its manifest row and its
  failure row as the manifest and failures table before the run had them.
* After a run: each requeued clip that this run finished is marked done (or failed, with the
  error) in review.parquet, unless the reviewer changed its edits meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vp_ray import outputs, records
from vp_ray.config import Config
from vp_ray.prompts import PROMPT_KINDS
from vp_ray.records import DatasetPlan
from vp_ray.review import store
from vp_ray.review.edits import EditError, has_edits, record_fields
from vp_ray.rows import DONE_BEFORE, FAILED

log = logging.getLogger(__name__)


@dataclass
class ReviewPlan:
    """The driver's side: each pending requeue's ``requeued_at`` (which edits this run takes)."""

    pending: dict[str, str] = field(default_factory=dict)


def plan_review(cfg: Config, plan: DatasetPlan) -> tuple[DatasetPlan, ReviewPlan]:
    """``plan`` with the review's edits (and, for a requeue run, the clips to redo)."""
    reviews = store.ReviewStore(cfg.output_dir).read()
    requeue_only = cfg.review.requeue
    if not reviews:
        if requeue_only:
            log.info("review.requeue: no %s in %s, so no clip is requeued", store.REVIEW_FILE, cfg.output_dir)
        return plan, ReviewPlan()
    edits = {}
    for clip_id, row in reviews.items():
        if row["requeue"] and has_edits(row):  # edits take effect once requeued, and stay after the redo
            meta = outputs.read_meta(cfg.output_dir, clip_id) or {}
            source = (meta["source_width"], meta["source_height"]) if meta.get("source_width") else None
            try:
                edits[clip_id] = record_fields(row, source, cfg)
            except EditError as error:
                log.warning("[%s] review edits not applied: %s", clip_id, error)
    pending = {clip_id: row["requeued_at"] for clip_id, row in reviews.items() if row["requeue"] == store.PENDING}
    redo = frozenset(pending) if requeue_only else frozenset()
    if requeue_only:
        log.info("review.requeue: %d clip(s) requeued in %s; every other clip is left as it is",
                 len(pending), store.REVIEW_FILE)
    plan = dataclasses.replace(plan, edits=edits, redo=redo)
    return dataclasses.replace(plan, prompted=_prompted(cfg, plan, requeue_only)), ReviewPlan(pending)


def _prompted(cfg: Config, plan: DatasetPlan, requeue_only: bool) -> int:
    """Rows whose mask comes from SAM2 once the edits apply (of the requeued rows, for a requeue run).
    An edit sets ``mask_kind`` only where it places a click or box."""
    clicked = any("mask_kind" in fields for fields in plan.edits.values())
    if not clicked and not requeue_only:
        return plan.prompted
    layout, count = cfg.dataset.layout, 0
    for raw in records.scanned_rows(plan.path, plan.format, plan.columns, cfg.dataset.limit):
        clip_id = records.row_id(raw, layout)
        if requeue_only and clip_id not in plan.redo:
            continue
        fields = plan.edits.get(clip_id, {})
        count += fields["mask_kind"] in PROMPT_KINDS if "mask_kind" in fields else records.needs_sam2(raw)
    return count


def carry_the_rest(ledger, output_dir: str, redo: frozenset[str]) -> int:
    """A requeue run's ledger gets every clip it does not redo as the run before left it: its manifest
    row (now ``done_before``) or its failure row. Returns how many."""
    carried = 0
    for name, status in (("manifest.parquet", DONE_BEFORE), ("failures.parquet", FAILED)):
        path = Path(output_dir) / name
        if not path.is_file():
            continue
        for row in pd.read_parquet(path).to_dict("records"):
            if row["clip_id"] not in redo and row["clip_id"] not in ledger.seen:
                ledger.carry({**row, "status": status})
                carried += 1
    return carried


def mark_redone(output_dir: str, finished: list[dict[str, Any]], review: ReviewPlan) -> int:
    """Each requeued clip this run finished (``finished``: its final rows) is done, or failed with its
    error; a clip whose edits the reviewer changed since the run read them stays pending."""
    ended = {row["clip_id"]: row for row in finished
             if row["clip_id"] in review.pending and row["status"] != DONE_BEFORE}
    if not ended:
        return 0

    def mark(row: dict[str, Any]) -> dict[str, Any] | None:
        final = ended[row["clip_id"]]
        if row["requeue"] != store.PENDING or row["requeued_at"] != review.pending[row["clip_id"]]:
            return None
        failed = final["status"] == FAILED
        return {**row, "requeue": store.FAILED if failed else store.DONE, "redone_at": store.now(),
                "requeue_error": final.get("error", "") if failed else ""}

    return len(store.ReviewStore(output_dir).update(sorted(ended), mark))
