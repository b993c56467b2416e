"""Clip records: the dataset's columns, their checks, and one ``ClipRecord`` per row.

Two layouts are understood:

* ``generic``: our own columns (README, "Dataset schema").
* ``vpdata``: the VPData/VPBench metadata CSV (``path, mask_id, start_frame, end_frame,
  fps, caption``) whose videos and ``all_masks.npz`` files sit in VPData's folder tree.

Whole-dataset problems (missing or unknown columns, duplicate ids) are found by
``preflight`` on the driver before any GPU starts; per-row problems become failed rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vp_ray.clip.prompts import PROMPT_KINDS
from vp_ray.config import Config, DatasetConfig, DatasetFormat, Layout
from vp_ray.errors import ClipError, ConfigError

GENERIC_COLUMNS = {
    "clip_id", "video_path", "prompt", "mask_kind", "mask_path", "mask_id", "points", "box",
    "start_frame", "end_frame", "fps", "seed", "max_seconds", "ground_truth_path", "dilate_size",
}
VPDATA_COLUMNS = {"path", "mask_id", "start_frame", "end_frame", "fps", "caption"}
MASK_KINDS = ("npz", "video", "png_dir", "points", "box")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
VPDATA_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.0)?\.mp4$")
CLIP_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
MAX_DILATE_SIZE = 256


# ----------------------------------------------------------------------------- preflight

HEADER_CHUNK = 1 << 16  # bytes read at a time until the CSV header line is whole
PARQUET_BATCH_ROWS = 8192  # rows of a Parquet dataset in memory at once while the driver reads it
ID_COLUMNS = ("clip_id", "video_path", "path", "mask_id", "start_frame", "end_frame")
# What decides whether a row's mask comes from clicks or a box (SAM2), as ``_mask_kind`` reads them.
PROMPT_COLUMNS = ("mask_kind", "mask_path", "points", "box")


@dataclass
class ClipRecord:
    """What to do with one clip. Empty string / -1 / NaN mean "not given"."""

    clip_id: str
    video_path: str
    prompt: str = ""
    # npz (VPData all_masks.npz + mask_id) | video (mask video) | png_dir | points | box
    mask_kind: str = ""
    mask_path: str = ""
    mask_id: int = -1
    # JSON [[x, y, label], ...]; label 1 = object (positive), 0 = background (negative).
    points: str = ""
    # JSON [x0, y0, x1, y1].
    box: str = ""
    # Source frame range, end exclusive (-1 = to the end).
    start_frame: int = 0
    end_frame: int = -1
    # Source frame rate, overriding the container's (NaN = read from the file).
    fps: float = math.nan
    seed: int = -1
    max_seconds: float = math.nan
    # The clean background video, where known (the demo dataset): enables scoring.
    ground_truth_path: str = ""
    # Mask dilation in pixels, overriding the run's dilate_size (-1 = the run's).
    dilate_size: int = -1


@dataclass
class RaggedRow:
    """A CSV line whose field count differs from the header's: it cannot become a record."""

    line: int  # 1-based line number in the file (the header is line 1)
    text: str
    fields: int
    expected: int


def skip_invalid_row(row) -> str:
    """pyarrow's ``invalid_row_handler`` for reading the dataset: ragged lines are skipped there and
    reported by the preflight (``plan_dataset``) as failed rows, never as a failed run."""
    return "skip"


def is_remote(path: str) -> bool:
    """A URI of a file system other than the local one (s3://, gs://, ...; file:// is local)."""
    return "://" in path and not path.startswith("file://")


def dataset_fs(path: str) -> tuple[pafs.FileSystem, str]:
    """The file system holding the dataset and the path within it. Remote URIs go through
    pyarrow's file systems, configured as usual (for S3: AWS_* variables, AWS_ENDPOINT_URL for an
    S3-compatible server)."""
    if is_remote(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path.removeprefix("file://")


def open_rows(path: str, fmt: str, on_ragged=skip_invalid_row) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """The dataset's column names and its rows, a batch at a time, from one opening of the file (the
    columns known before any row is read; memory holds one batch, never the file).

    CSV columns come as bytes, as the pipeline reads them; ``on_ragged`` sees each CSV line whose
    field count differs from the header's (one reader thread, so that pyarrow knows its number).
    """
    fs, where = dataset_fs(path)
    try:
        info = fs.get_file_info(where)
        if info.type == pafs.FileType.NotFound:
            raise ConfigError(f"dataset file not found: {path}")
        if fmt == "csv":
            return _open_csv(fs.open_input_stream(where), on_ragged)
        if info.type == pafs.FileType.File:  # one file: its footer and its rows through one handle
            parquet = pq.ParquetFile(fs.open_input_file(where))
            return list(parquet.schema_arrow.names), parquet.iter_batches(PARQUET_BATCH_ROWS)
        dataset = pads.dataset(where, format="parquet", filesystem=fs)  # a folder of Parquet files
        return list(dataset.schema.names), dataset.to_batches(batch_size=PARQUET_BATCH_ROWS)
    except (pa.ArrowInvalid, OSError) as error:
        raise ConfigError(f"cannot read the {fmt} dataset {path}: {error}") from error


def _open_csv(stream, on_ragged) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """Every column as bytes needs the names before the reader starts: the header line is read first,
    parsed by pyarrow as the reader would, and handed to the reader again with the rest of the stream."""
    head = b""
    while b"\n" not in head:
        chunk = stream.read(HEADER_CHUNK)
        if not chunk:
            break
        head += chunk
    header = head[: head.find(b"\n") + 1] if b"\n" in head else head
    names = pacsv.read_csv(pa.BufferReader(header), convert_options=pacsv.ConvertOptions(check_utf8=False)).schema.names
    reader = pacsv.open_csv(io.BufferedReader(_Replay(head, stream)),
                            read_options=pacsv.ReadOptions(use_threads=False),
                            parse_options=pacsv.ParseOptions(invalid_row_handler=on_ragged),
                            convert_options=pacsv.ConvertOptions(check_utf8=False,
                                                                 column_types={c: pa.binary() for c in names}))
    return list(names), iter(reader)


class _Replay(io.RawIOBase):
    """The bytes already read from a stream, then the rest of it."""

    def __init__(self, head: bytes, stream):
        self.head, self.stream = memoryview(head), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if len(self.head):
            size = min(len(buffer), len(self.head))
            buffer[:size], self.head = self.head[:size], self.head[size:]
            return size
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_batches(path: str, fmt: str) -> Iterator[pa.RecordBatch]:
    """The dataset's rows, a batch at a time, read again (a run reads them once: ``plan_dataset``)."""
    yield from open_rows(path, fmt)[1]


def check_columns(columns: list[str], layout: Layout, ignore: list[str]) -> None:
    """Fail fast, listing every problem, before any work starts."""
    problems = []
    known = GENERIC_COLUMNS if layout is Layout.generic else VPDATA_COLUMNS
    unknown = sorted(set(columns) - known - set(ignore))
    if unknown:
        problems.append(f"unknown column(s) {unknown} (known: {sorted(known)}; list columns to "
                        f"skip in dataset.ignore_columns)")
    if layout is Layout.generic:
        if "video_path" not in columns:
            problems.append("missing column 'video_path'")
    else:
        missing = sorted(VPDATA_COLUMNS - set(columns))
        if missing:
            problems.append(f"missing VPData column(s) {missing}")
    if problems:
        raise ConfigError("dataset columns: " + "; ".join(problems))


def needs_sam2(raw: dict[str, Any]) -> bool:
    """Whether a raw row's mask comes from clicks or a box, as ``_mask_kind`` will decide: a
    ``points`` or ``box`` column with no value in it needs no SAM2. (False for a row too broken to
    tell: it fails on its own later.)"""
    try:
        row = clean({column: raw.get(column) for column in PROMPT_COLUMNS})
    except ClipError:
        return False
    if row["mask_kind"] is not None:
        return str(row["mask_kind"]) in ("points", "box")
    return row["mask_path"] is None and (row["points"] is not None or row["box"] is not None)


def row_id(raw: dict[str, Any], layout: Layout) -> str | None:
    """The clip id a raw row's id columns give, or None if they give none (the row fails on its own
    later); the other columns (a caption with bad UTF-8, say) do not matter."""
    try:
        return clip_id_of(clean({k: v for k, v in raw.items() if k in ID_COLUMNS}), layout)
    except ClipError:
        return None


class RowSink(Protocol):
    """Where the one pass over the dataset puts its rows (``vp_ray.runtime.todo``'s shards)."""

    def add(self, batch: pa.RecordBatch, ids: list[str | None]) -> None:
        """The next rows, with the clip id of each (None: a row that gives none)."""

    def ids(self) -> Iterable[str | None]:
        """The ids of every row added, read again from where they were put."""


class RowScan:
    """What one pass over the rows learns of them: their number, the ids that may repeat and how many
    rows need SAM2 (a review's ``edits`` applied; of the requeued rows ``redo`` only, where given).

    Memory holds 8 bytes per row (a hash of each id), not the ids: ``duplicates`` names them from a
    second look at the ids, only if some hashes repeat."""

    def __init__(self, layout: Layout, edits: dict[str, dict[str, Any]], redo: frozenset[str] | None):
        self.layout, self.edits, self.redo = layout, edits, redo
        self.hashes = array("q")
        self.prompted = 0

    @property
    def rows(self) -> int:
        return len(self.hashes)

    def add(self, batch: pa.RecordBatch) -> list[str | None]:
        """Count ``batch``'s rows; returns their ids."""
        wanted = [c for c in (*ID_COLUMNS, *PROMPT_COLUMNS) if c in batch.schema.names]
        ids = []
        for raw in batch.select(wanted).to_pylist():
            clip_id = row_id(raw, self.layout)
            ids.append(clip_id)
            self.hashes.append(_hash64(clip_id) if clip_id is not None else 0)
            if self.redo is not None and clip_id not in self.redo:
                continue
            fields = self.edits.get(clip_id, {})  # an edit sets mask_kind only where it places a click or box
            self.prompted += fields["mask_kind"] in PROMPT_KINDS if "mask_kind" in fields else needs_sam2(raw)
        return ids

    def duplicates(self, ids_again: Callable[[], Iterable[str | None]]) -> dict[str, int]:
        """The ids that occur more than once, with their counts, from ``ids_again`` if hashes repeat."""
        values, counts = np.unique(np.frombuffer(self.hashes, dtype=np.int64), return_counts=True)
        repeated = set(values[(counts > 1) & (values != 0)].tolist())
        if not repeated:
            return {}
        found = Counter(clip_id for clip_id in ids_again() if clip_id is not None and _hash64(clip_id) in repeated)
        return {clip_id: count for clip_id, count in found.items() if count > 1}


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True) or 1


@dataclass
class DatasetPlan:
    """What preflight learned about the dataset file, without reading its rows into memory."""

    path: str
    format: str
    columns: list[str]
    total: int  # input rows this run accounts for, ragged CSV lines included
    duplicates: dict[str, int]
    ragged: list[RaggedRow]  # CSV lines that are not rows: failures before the pipeline
    # What the pipeline reads: the rows left to do, as shards (``vp_ray.runtime.todo``); ``pending`` counts them.
    read_path: str = ""
    pending: int = -1
    prompted: int = 0  # rows whose mask comes from clicks or a box
    # A review's edits (vp_ray.review): record fields that replace the dataset's, by clip id; and the
    # clips a requeue run redoes whatever their folders hold (review.requeue: no other row runs).
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)
    redo: frozenset[str] = frozenset()

    @property
    def needs_segmentation(self) -> bool:
        return self.prompted > 0

    @property
    def base_dir(self) -> str:
        """Relative paths in the dataset are resolved against its folder ("" for a remote dataset:
        they need dataset.video_root / mask_root)."""
        if is_remote(self.path):
            return ""
        return str(Path(self.path.removeprefix("file://")).resolve().parent)


def plan_dataset(cfg: Config, edits: dict[str, dict[str, Any]] | None = None,
                 redo: frozenset[str] | None = None, keep: RowSink | None = None) -> DatasetPlan:
    """Read the dataset, once, before any worker starts: its columns, ids and size, and the rows that
    need SAM2 (a review's ``edits`` applied; ``redo``: the clips of a requeue run, None for a run of
    every row). Each row within ``dataset.limit`` goes to ``keep``, which later steps read instead of
    the dataset; without one, ids that may repeat are named from a second read."""
    dataset, path = cfg.dataset, cfg.dataset.path
    layout, limit = dataset.layout, dataset.limit
    if dataset.format is DatasetFormat.demo:
        from vp_ray.clip.demo import ensure_demo_dataset

        path = str(ensure_demo_dataset(path, num_clips=dataset.demo_num_clips,
                                       num_frames=dataset.demo_num_frames, fps=dataset.demo_fps, seed=cfg.seed))
    fmt = "parquet" if dataset.format is DatasetFormat.parquet else "csv"   # the file's format
    ragged: list[RaggedRow] = []

    def collect(row) -> str:
        ragged.append(RaggedRow(row.number, row.text, row.actual_columns, row.expected_columns))
        return "skip"

    columns, batches = open_rows(path, fmt, collect)
    check_columns(columns, layout, list(dataset.ignore_columns))
    scan = RowScan(layout, edits or {}, redo)
    for batch in batches:
        if 0 <= limit <= scan.rows:
            break
        batch = batch.slice(0, limit - scan.rows) if limit >= 0 else batch
        ids = scan.add(batch)
        if keep is not None:
            keep.add(batch, ids)
    valid = scan.rows
    if limit >= 0:
        # Only ragged lines before the last row read (valid rows before line j: j - 2 - earlier ragged).
        ragged = [r for i, r in enumerate(ragged) if r.line - 2 - i < valid]
    if valid + len(ragged) == 0 and limit != 0:
        raise ConfigError(f"the dataset {path} has no rows")
    duplicates = scan.duplicates(keep.ids if keep is not None else lambda: _ids_again(path, fmt, layout, limit))
    return DatasetPlan(path=path, format=fmt, columns=columns, total=valid + len(ragged), duplicates=duplicates,
                       ragged=ragged, prompted=scan.prompted, edits=edits or {}, redo=redo or frozenset())


def _ids_again(path: str, fmt: str, layout: Layout, limit: int) -> Iterator[str | None]:
    """The ids of the first ``limit`` rows (all if < 0), from a second read of the dataset."""
    _, batches = open_rows(path, fmt)
    rows = 0
    for batch in batches:
        for raw in batch.select([c for c in ID_COLUMNS if c in batch.schema.names]).to_pylist():
            if 0 <= limit <= rows:
                return
            rows += 1
            yield row_id(raw, layout)


# ----------------------------------------------------------------------------- one row

def clean(raw: dict[str, Any]) -> dict[str, Any]:
    """Text as str (bytes decoded strictly), missing values as None."""
    out = {}
    for key, value in raw.items():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ClipError(f"column {key!r} is not valid UTF-8 text ({error.reason} at byte "
                                f"{error.start})") from None
        if isinstance(value, str):
            value = value.strip()
            value = None if value == "" else value
        elif isinstance(value, float) and math.isnan(value):
            value = None
        elif value is not None and hasattr(value, "item") and np.ndim(value) == 0:
            value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
        out[key] = value
    return out


def clip_id_of(row: dict[str, Any], layout: Layout) -> str:
    """The record's id: given, or derived from its video (and mask id / frame range)."""
    given = row.get("clip_id")
    if given is not None:
        clip_id = str(given)
        if not CLIP_ID_PATTERN.match(clip_id) or ".." in clip_id:
            raise ClipError(f"clip_id {clip_id!r} is not allowed: use letters, digits, '.', '_' "
                            "and '-' only (no path separators, no leading '.')")
        return clip_id
    video = row.get("path" if layout is Layout.vpdata else "video_path")
    if video is None:
        raise ClipError("row has no video path")
    stem = Path(str(video)).name
    for suffix in VIDEO_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    parts = [stem]
    if row.get("mask_id") is not None:
        parts.append(f"m{_as_int(row['mask_id'], 'mask_id')}")
    if layout is Layout.vpdata:
        parts.append(f"{_as_int(row.get('start_frame') or 0, 'start_frame')}-"
                     f"{_as_int(row.get('end_frame') if row.get('end_frame') is not None else -1, 'end_frame')}")
    clip_id = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).lstrip("._-")[:200]
    return clip_id or "clip_" + hashlib.sha1(str(video).encode()).hexdigest()[:12]


def normalize(raw: dict[str, Any], dataset: DatasetConfig, base_dir: str) -> ClipRecord:
    """Turn one dataset row into a checked ``ClipRecord`` (raises ClipError on a bad row)."""
    row = clean(raw)
    clip_id = clip_id_of(row, dataset.layout)
    if dataset.layout is Layout.vpdata:
        row = _vpdata_to_generic(row, dataset, base_dir)
    video_root = dataset.video_root or base_dir
    mask_root = dataset.mask_root or base_dir
    record = ClipRecord(
        clip_id=clip_id,
        video_path=_resolve(row.get("video_path"), video_root, "video_path"),
        prompt=str(row.get("prompt") or dataset.default_prompt),
        mask_path=_resolve(row.get("mask_path"), mask_root, "mask_path") if row.get("mask_path") else "",
        mask_id=_as_int(row.get("mask_id"), "mask_id") if row.get("mask_id") is not None else -1,
        points=_points_json(row.get("points")),
        box=_box_json(row.get("box")),
        start_frame=_as_int(row.get("start_frame") or 0, "start_frame"),
        end_frame=_as_int(row["end_frame"], "end_frame") if row.get("end_frame") is not None else -1,
        fps=_as_float(row["fps"], "fps") if row.get("fps") is not None else math.nan,
        seed=_as_int(row["seed"], "seed") if row.get("seed") is not None else -1,
        max_seconds=(_as_float(row["max_seconds"], "max_seconds")
                     if row.get("max_seconds") is not None else math.nan),
        ground_truth_path=(_resolve(row.get("ground_truth_path"), video_root, "ground_truth_path")
                           if row.get("ground_truth_path") else ""),
        dilate_size=_as_int(row["dilate_size"], "dilate_size") if row.get("dilate_size") is not None else -1,
    )
    record.mask_kind = _mask_kind(row.get("mask_kind"), record)
    _check_ranges(record)
    return record


def _vpdata_to_generic(row: dict[str, Any], dataset: DatasetConfig, base_dir: str) -> dict[str, Any]:
    """VPData's folder conventions: ``<id>.0.mp4`` is a Videovo clip, anything else Pexels."""
    path = str(row["path"])
    if not VPDATA_FILE_NAME.match(path):
        raise ClipError(f"invalid VPData path {path!r}: expected a file name like <id>.mp4 (Pexels) or "
                        "<id>.0.mp4 (Videovo), without folders")
    base = path.split(".")[0]
    video_root = dataset.video_root or base_dir
    if path.endswith(".0.mp4"):
        video = os.path.join(video_root, "videovo", "raw_video", base[:-3], f"{base}.0.mp4")
        masks = os.path.join("video_inpainting", "videovo", base, "all_masks.npz")
    else:
        video = os.path.join(video_root, "pexels", "pexels", "raw_video", base[:9], f"{base}.mp4")
        masks = os.path.join("video_inpainting", "pexels", base, "all_masks.npz")
    return {**row, "video_path": video, "mask_path": masks, "mask_kind": "npz",
            "prompt": row.get("caption")}


def _resolve(value: Any, root: str, column: str) -> str:
    if value is None:
        raise ClipError(f"{column} is empty")
    path = os.path.expanduser(str(value))
    if not root and not os.path.isabs(path):
        raise ClipError(f"{column} {path!r} is relative and the dataset file is remote: give absolute paths "
                        "or set dataset.video_root / dataset.mask_root")
    return os.path.abspath(path if os.path.isabs(path) else os.path.join(root, path))


def _mask_kind(given: Any, record: ClipRecord) -> str:
    if given is not None:
        kind = str(given)
        if kind not in MASK_KINDS:
            raise ClipError(f"mask_kind {kind!r} is not one of {list(MASK_KINDS)}")
    elif record.mask_path:
        lower = record.mask_path.lower()
        kind = "npz" if lower.endswith(".npz") else "video" if lower.endswith(VIDEO_SUFFIXES) else "png_dir"
    elif record.points:
        kind = "points"
    elif record.box:
        kind = "box"
    else:
        raise ClipError("no mask source: give mask_path (npz, mask video or PNG folder), points or box")
    needs = {"npz": "mask_path", "video": "mask_path", "png_dir": "mask_path",
             "points": "points", "box": "box"}[kind]
    if not getattr(record, needs):
        raise ClipError(f"mask_kind {kind!r} needs the column {needs!r}")
    if kind == "npz" and record.mask_id < 0:
        raise ClipError("mask_kind 'npz' needs a mask_id (the label of the object in all_masks.npz)")
    return kind


def _check_ranges(record: ClipRecord) -> None:
    if record.start_frame < 0:
        raise ClipError(f"start_frame {record.start_frame} is negative")
    if record.end_frame != -1 and record.end_frame <= record.start_frame:
        raise ClipError(f"end_frame {record.end_frame} is not after start_frame {record.start_frame}")
    if not math.isnan(record.fps) and not (0 < record.fps <= 1000):
        raise ClipError(f"fps {record.fps} is not a usable frame rate (0 < fps <= 1000)")
    if not math.isnan(record.max_seconds) and not (0 < record.max_seconds <= 3600):
        raise ClipError(f"max_seconds {record.max_seconds} is out of range (0, 3600]")
    if not -1 <= record.dilate_size <= MAX_DILATE_SIZE:
        raise ClipError(f"dilate_size {record.dilate_size} is out of range [0, {MAX_DILATE_SIZE}]")


def _as_int(value: Any, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ClipError(f"{column} {value!r} is not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise ClipError(f"{column} {value!r} is not a whole number")
    return int(number)


def _as_float(value: Any, column: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ClipError(f"{column} {value!r} is not a number") from None
    if math.isnan(number):
        raise ClipError(f"{column} is NaN")
    return number


def _points_json(value: Any) -> str:
    """Points as JSON ``[[x, y, label], ...]`` (label 1 = object, 0 = background)."""
    if value is None:
        return ""
    try:
        points = json.loads(value) if isinstance(value, str) else value
        points = [list(p) for p in points]
    except (TypeError, ValueError):
        raise ClipError(f"points {value!r} is not JSON like [[x, y, 1], [x, y, 0]]") from None
    out = []
    for point in points:
        if len(point) not in (2, 3) or not all(_finite(v) for v in point):
            raise ClipError(f"point {point!r} is not [x, y] or [x, y, label]")
        label = int(point[2]) if len(point) == 3 else 1
        if label not in (0, 1):
            raise ClipError(f"point label {point[2]!r} must be 1 (object) or 0 (background)")
        out.append([float(point[0]), float(point[1]), label])
    if not out or not any(p[2] == 1 for p in out):
        raise ClipError("points need at least one positive (label 1) point")
    return json.dumps(out)


def _box_json(value: Any) -> str:
    if value is None:
        return ""
    try:
        box = json.loads(value) if isinstance(value, str) else list(value)
    except (TypeError, ValueError):
        raise ClipError(f"box {value!r} is not JSON like [x0, y0, x1, y1]") from None
    if len(box) != 4 or not all(_finite(v) for v in box):
        raise ClipError(f"box {value!r} is not [x0, y0, x1, y1]")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ClipError(f"box {value!r} is empty: x1 must exceed x0 and y1 exceed y0")
    return json.dumps([x0, y0, x1, y1])


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
