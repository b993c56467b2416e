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

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vp_ray.clip import outputs
from vp_ray.clip.rows import DONE_BEFORE, FAILED
from vp_ray.config import Config
from vp_ray.review import store
from vp_ray.review.edits import EditError, has_edits, record_fields

log = logging.getLogger(__name__)


@dataclass
class ReviewPlan:
    """What the run takes from the review: each clip's ``edits`` (record fields by clip id), ``redo``
    (a requeue run's clips; None for a run of every row) and each pending requeue's ``requeued_at``
    (which edits this run takes)."""

    pending: dict[str, str] = field(default_factory=dict)
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)
    redo: frozenset[str] | None = None


def read_review(cfg: Config) -> ReviewPlan:
    """The review's edits (and, for a requeue run, the clips to redo), for the dataset's one read
    (``todo.write_todo``: the rows that need SAM2 are counted with the edits applied)."""
    reviews = store.ReviewStore(cfg.output_dir).read()
    requeue_only = cfg.review.requeue
    if not reviews:
        if requeue_only:
            log.info("review.requeue: no %s in %s, so no clip is requeued", store.REVIEW_FILE, cfg.output_dir)
        return ReviewPlan(redo=frozenset() if requeue_only else None)
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
    if requeue_only:
        log.info("review.requeue: %d clip(s) requeued in %s; every other clip is left as it is",
                 len(pending), store.REVIEW_FILE)
    return ReviewPlan(pending, edits, frozenset(pending) if requeue_only else None)


def carry_the_rest(ledger, output_dir: str, redo: frozenset[str]) -> int:
    """A requeue run's ledger gets every clip it does not redo as the run before left it: its manifest
    row (now ``done_before``) or its failure row. Returns how many."""
    carried = 0
    for name, status in (("manifest.parquet", DONE_BEFORE), ("failures.parquet", FAILED)):
        path = Path(output_dir) / name
        if not path.is_file():
            continue
        for batch in pq.ParquetFile(path).iter_batches():
            for row in batch.to_pylist():
                if row["clip_id"] not in redo and row["clip_id"] not in ledger.seen:
                    ledger.carry({**row, "status": status})
                    carried += 1
    return carried


def mark_redone(output_dir: str, finished: Iterable[dict[str, Any]], review: ReviewPlan) -> int:
    """Each requeued clip this run finished (``finished``: its final rows, ``clip_id``, ``status`` and
    ``error`` at least) is done, or failed with its error; a clip whose edits the reviewer changed since
    the run read them stays pending."""
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
