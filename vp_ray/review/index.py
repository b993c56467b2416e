"""Every clip of an output folder as one table, kept up to date while a run goes on.

A run writes ``manifest.parquet`` and ``failures.parquet`` when it ends (or stops), and commits each
clip folder, ``meta.json`` last, the moment the clip is done. So the table is the manifest's rows, the
failures' rows, and, for every clip folder newer than the manifest (a clip of the run going on now, or
a redone one), the row its ``meta.json`` gives; the review's verdicts come from ``review.parquet``.

``refresh`` looks again at most once a ``min_interval_s``: the files' modification times and one
listing of ``clips/`` (10,000 folders: tens of milliseconds); only what changed is read again.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vp_ray.clip import outputs
from vp_ray.clip.rows import FAILED
from vp_ray.review.store import ReviewStore
from vp_ray.runtime.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS

# Filters: column, operator, value. "~" is "contains" (text, any case); "empty" and "set" take no value.
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~", "empty", "set")
MAX_PAGE = 200


class QueryError(ValueError):
    """A filter or sort the table cannot apply; the message says why."""


@dataclass
class Query:
    filters: list[tuple[str, str, str]]
    sort: str = "clip_id"
    descending: bool = False
    text: str = ""  # in the clip id or the prompt, any case


class ClipIndex:
    def __init__(self, output_dir: str | os.PathLike, min_interval_s: float = 1.0):
        self.output_dir = Path(output_dir)
        self.clips_dir = self.output_dir / "clips"
        self.store = ReviewStore(self.output_dir)
        self.min_interval_s = min_interval_s
        self.version = 0
        self.table = pd.DataFrame(columns=["clip_id"])
        self._lock = threading.Lock()
        self._checked = -math.inf
        self._stamps: tuple = ()
        self._folders: dict[str, int] = {}       # clip id -> folder mtime (ns), as last listed
        self._metas: dict[str, tuple[int, dict[str, Any]]] = {}  # clip id -> (mtime, row of its meta.json)
        self.refresh(force=True)

    # ------------------------------------------------------------------ reading the folder

    def refresh(self, force: bool = False) -> bool:
        """Look at the folder again (at most once a ``min_interval_s`` unless ``force``); True if the
        table changed."""
        with self._lock:
            if not force and time.monotonic() - self._checked < self.min_interval_s:
                return False
            self._checked = time.monotonic()
            folders = self._list_folders()
            stamps = (_mtime(self.output_dir / "manifest.parquet"), _mtime(self.output_dir / "failures.parquet"),
                      self.store.mtime_ns())
            if stamps == self._stamps and folders == self._folders and not force:
                return False
            self._stamps, self._folders = stamps, folders
            self.table = self._build(stamps[0])
            self.version += 1
            return True

    def _list_folders(self) -> dict[str, int]:
        if not self.clips_dir.is_dir():
            return {}
        folders = {}
        with os.scandir(self.clips_dir) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue  # a temporary folder of a clip being written
                try:
                    folders[entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
                except FileNotFoundError:  # replaced while listed
                    continue
        return folders

    def _build(self, manifest_mtime: int) -> pd.DataFrame:
        manifest = _read(self.output_dir / "manifest.parquet", MANIFEST_COLUMNS)
        failures = _read(self.output_dir / "failures.parquet", FAILURE_COLUMNS)
        failures["status"] = FAILED
        # Folders committed after the manifest was written: their meta.json is the newer word.
        newer = [clip_id for clip_id, mtime in self._folders.items() if mtime > manifest_mtime]
        meta_rows = [row for row in (self._meta_row(clip_id) for clip_id in newer) if row is not None]
        fresh = pd.DataFrame(meta_rows, columns=MANIFEST_COLUMNS)
        fresh_ids = set(fresh.clip_id)
        parts = [frame for frame in (fresh, manifest[~manifest.clip_id.isin(fresh_ids)],
                                     failures[~failures.clip_id.isin(fresh_ids | set(manifest.clip_id))])
                 if len(frame)]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=MANIFEST_COLUMNS)
        table = table.reindex(columns=list(dict.fromkeys([*MANIFEST_COLUMNS, *FAILURE_COLUMNS])))
        table["degraded"] = table["degraded"].fillna(False).astype(bool)  # a failed clip was not shortened
        table = table.infer_objects()
        for column in table.columns:  # text columns: "" for missing, so that filters compare text
            if table[column].dtype == object:
                table[column] = table[column].fillna("").astype(str)
        table["has_folder"] = table.clip_id.isin(self._folders)
        # When the clip's folder was committed (Unix seconds): the newest first while a run goes on.
        table["committed_at"] = [self._folders[c] / 1e9 if c in self._folders else np.nan for c in table.clip_id]
        reviews = self.store.read()
        table["review_verdict"] = [reviews[c]["verdict"] if c in reviews else "" for c in table.clip_id]
        table["review_requeue"] = [reviews[c]["requeue"] if c in reviews else "" for c in table.clip_id]
        table["review_note"] = [reviews[c]["note"] if c in reviews else "" for c in table.clip_id]
        return table.sort_values("clip_id", kind="stable", ignore_index=True)

    def _meta_row(self, clip_id: str) -> dict[str, Any] | None:
        mtime = self._folders[clip_id]
        cached = self._metas.get(clip_id)
        if cached and cached[0] == mtime:
            return cached[1]
        meta = outputs.read_meta(self.output_dir, clip_id)
        if meta is None:
            return None
        row = {k: meta.get(k) for k in MANIFEST_COLUMNS}
        row["output_dir"] = str(outputs.clip_dir(self.output_dir, clip_id))
        has_result = "result.mp4" in meta.get("files", {})
        row["result_path"] = str(Path(row["output_dir"]) / "result.mp4") if has_result else ""
        self._metas[clip_id] = (mtime, row)
        return row

    # ------------------------------------------------------------------ asking it

    def columns(self) -> list[dict[str, str]]:
        """Each column and its kind (number, flag or text), for the filter and sort controls."""
        return [{"name": name, "kind": _kind(self.table[name])} for name in self.table.columns]

    def select(self, query: Query) -> pd.DataFrame:
        """The rows the query's filters keep, in its order."""
        table = self.table
        keep = np.ones(len(table), bool)
        for column, op, value in query.filters:
            keep &= _match(table, column, op, value)
        if query.text:
            text = query.text.lower()
            keep &= (table.clip_id.str.lower().str.contains(text, regex=False)
                     | table.prompt.str.lower().str.contains(text, regex=False)).to_numpy()
        if query.sort not in table.columns:
            raise QueryError(f"no column {query.sort!r} to sort by")
        return table[keep].sort_values([query.sort, "clip_id"], ascending=[not query.descending, True],
                                        kind="stable", na_position="last")

    def row(self, clip_id: str) -> dict[str, Any] | None:
        found = self.table[self.table.clip_id == clip_id]
        return records(found)[0] if len(found) else None

    def counts(self) -> dict[str, int]:
        table = self.table
        return {"clips": len(table), **table.status.value_counts().to_dict(),
                "degraded": int(table.degraded.fillna(False).astype(bool).sum()) if "degraded" in table else 0,
                "reviewed": int((table.review_verdict != "").sum()),
                "requeue pending": int((table.review_requeue == "pending").sum())}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON holds them: NaN as null, numpy scalars as Python's."""
    rows = frame.to_dict("records")
    return [{k: outputs.json_value(v) for k, v in row.items()} for row in rows]


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "flag"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    return "text"


def _match(table: pd.DataFrame, column: str, op: str, value: str) -> np.ndarray:
    if column not in table.columns:
        raise QueryError(f"no column {column!r} to filter on")
    if op not in OPERATORS:
        raise QueryError(f"operator {op!r} is not one of {' '.join(OPERATORS)}")
    series = table[column]
    kind = _kind(series)
    if op in ("empty", "set"):
        empty = series.isna() | (series == "") if kind == "text" else series.isna()
        return (empty if op == "empty" else ~empty).to_numpy()
    if op == "~":
        return series.astype(str).str.lower().str.contains(value.lower(), regex=False).to_numpy()
    if kind == "flag":
        if value.lower() not in ("true", "false", "1", "0"):
            raise QueryError(f"{column} is true or false, not {value!r}")
        target: Any = value.lower() in ("true", "1")
    elif kind == "number":
        try:
            target = float(value)
        except ValueError:
            raise QueryError(f"{column} holds numbers; {value!r} is not one") from None
    else:
        target = value
    compare = {"=": series.__eq__, "!=": series.__ne__, "<": series.__lt__, "<=": series.__le__,
               ">": series.__gt__, ">=": series.__ge__}[op]
    try:
        return compare(target).fillna(False).to_numpy(bool)
    except TypeError:
        raise QueryError(f"cannot compare {column} with {op} {value!r}") from None


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except (FileNotFoundError, OSError, ValueError):
        return pd.DataFrame(columns=columns)
    return frame.reindex(columns=list(dict.fromkeys([*columns, *frame.columns])))


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a PNG, read from its header (no decoding)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")

