"""A self-contained ``report.html`` for a finished run's output folder.

``write_report(output_dir)`` reads ``manifest.parquet``, ``failures.parquet``, ``run_samples.csv``
and the clip folders, and writes one HTML file beside them: counts, the config, a few plots, the
benchmark's numbers where ``task=evaluate`` has run (``evaluation.json``), the quality scores (their
distributions, the worst clips of each, the suspect clips), the slowest and the failed clips, and a
grid of thumbnails with an animated preview per clip.
Every image is embedded as a ``data:`` URI and every link to a clip's files is relative, so the
folder can be moved or copied as a whole and the report opened without a network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from vp_ray.clip.atomic import atomic_path
from vp_ray.config import Config, as_dict
from vp_ray.evaluation.qa import SCORES as QA_SCORES
from vp_ray.evaluation.qa import short_name
from vp_ray.runtime.gpu_idle import TIMELINE_COLUMNS, idle_summary

REPORT_NAME = "report.html"
TIME_COLUMNS = ("time_prepare_s", "time_segment_s", "time_inpaint_s", "time_write_s")
# The manifest columns the report reads: a run of 100,000 clips holds ~60 columns of them, most of
# which (paths, prompts, warnings) the report never shows; it reads these alone.
REPORT_COLUMNS = ("clip_id", "status", "degraded", "attempts", "num_frames", "peak_gpu_mem_gb", "qa_flags",
                  *TIME_COLUMNS, *TIMELINE_COLUMNS, *QA_SCORES)
THUMB_WIDTH = 160
GIF_FRAMES = 12
SLOWEST = 10
MAX_FAILURES = 500
ERROR_CHARS = 500
SECRET_WORDS = ("secret", "password", "token", "credential", "access_key")
WORST = 20
MAX_SUSPECTS = 500
WORST_THUMB_WIDTH = 120
# What each quality score measures, as a reader of the report needs it (README, "Quality scores").
QA_MEANING = {
    "qa_drift": "the background's mean change from the source outside the hole, in 8-bit levels (0: untouched)",
    "qa_flicker": "the hole's frame-to-frame change after optical flow, over the background's (1: as steady)",
    "qa_seam": "the gradient on the hole's outline, over the gradient beside it (1: no seam)",
    "qa_object": "the share of the removed object's own colours found again where it was (0: none)",
}
# The paper's Table 2 (VideoPainter): its column groups, and the evaluation.json metric of each column
# under vpbench (the authors' code: its masked_* metrics are the five of "masked region preservation")
# and under hole (the same question asked of the background outside the hole: out_*).
TABLE2 = [("Masked region preservation", [("PSNR", "↑", "masked_psnr", "out_psnr"),
                                          ("SSIM", "↑", "masked_ssim", "out_ssim"),
                                          ("LPIPS", "↓", "masked_lpips", "out_lpips"),
                                          ("MSE", "↓", "masked_mse", "out_mse"),
                                          ("MAE", "↓", "masked_mae", "out_mae")]),
          ("Text alignment", [("CLIP Sim", "↑", "clip_score", "clip_score"),
                              ("CLIP Sim (M)", "↑", "masked_region_clip_score", "hole_clip_score")]),
          ("Video quality", [("FVID", "↓", "fvid", "fvid")])]


@dataclass
class RunData:
    """The tables of one run folder; an absent file reads as an empty table (or None)."""

    output_dir: Path
    manifest: pd.DataFrame
    failures: pd.DataFrame
    samples: pd.DataFrame | None
    notes: list[str]
    evaluation: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Reading


def read_run(output_dir: str | os.PathLike) -> RunData:
    """Read the manifest, failures and resource samples of a run folder."""
    out = Path(output_dir)
    notes: list[str] = []
    manifest = _read_parquet(out / "manifest.parquet", notes, REPORT_COLUMNS)
    failures = _read_parquet(out / "failures.parquet", notes)
    samples = None
    if (out / "run_samples.csv").is_file():
        try:
            samples = pd.read_csv(out / "run_samples.csv")
        except (OSError, ValueError) as error:
            notes.append(f"run_samples.csv unreadable: {error}")
    evaluation = None
    if (out / "evaluation.json").is_file():
        try:
            evaluation = json.loads((out / "evaluation.json").read_text())
        except (OSError, ValueError) as error:
            notes.append(f"evaluation.json unreadable: {error}")
    return RunData(out, manifest.reset_index(drop=True), failures.reset_index(drop=True), samples, notes,
                   evaluation)


def _read_parquet(path: Path, notes: list[str], columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The table at ``path`` (of ``columns``, those it has), or an empty one (with a note) when it is
    missing or unreadable."""
    if not path.is_file():
        notes.append(f"{path.name} not found")
        return pd.DataFrame()
    try:
        if columns is not None:
            present = set(pq.read_schema(path).names)
            columns = [name for name in columns if name in present]
        return pd.read_parquet(path, columns=columns)
    except Exception as error:  # noqa: BLE001 - a broken file must not stop the report
        notes.append(f"{path.name} unreadable: {type(error).__name__}: {error}")
        return pd.DataFrame()


def column(df: pd.DataFrame, name: str, default: Any = 0) -> pd.Series:
    """``df[name]``, or a column of ``default`` when an older folder lacks it; numeric defaults
    also turn unparsable or missing values into ``default``."""
    if name not in df.columns:
        return pd.Series([default] * len(df), index=df.index, dtype=object if isinstance(default, str)
                         else None)
    values = df[name]
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return pd.to_numeric(values, errors="coerce").fillna(default)
    if isinstance(default, bool):
        return values.fillna(default).astype(bool)
    return values.fillna(default).astype(str)


def inpaint_span(manifest: pd.DataFrame) -> tuple[float, float, int]:
    """(first start, last finish, clips) over the rows whose inpainting times are both known."""
    start, finish = column(manifest, "inpaint_started"), column(manifest, "inpaint_finished")
    known = (start > 0) & (finish > 0)
    if not known.any():
        return 0.0, 0.0, 0
    return float(start[known].min()), float(finish[known].max()), int(known.sum())


def run_counts(data: RunData) -> list[tuple[str, str]]:
    """The headline numbers, as (label, value) pairs."""
    m = data.manifest
    status = column(m, "status", "ok")
    first, last, timed = inpaint_span(m)
    span = last - first
    rate = f"{timed / span * 3600:.1f}" if span > 0 else "n/a"
    return [
        ("clips ok", str(int((status == "ok").sum()))),
        ("done before", str(int((status == "done_before").sum()))),
        ("suspect (quality scores)", str(int((status == "suspect").sum()))),
        ("failed", str(len(data.failures))),
        ("degraded", str(int(column(m, "degraded", False).sum()))),
        ("retried (attempts > 1)", str(int((column(m, "attempts", 1) > 1).sum()))),
        ("inpainting wall span", _duration(span) if span > 0 else "n/a"),
        ("clips/hour over that span", rate),
        ("GPU idle between clips", idle_summary(m) or "n/a"),
    ]


def _duration(seconds: float) -> str:
    """``seconds`` as a short human duration."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure():
    """A small figure and its axes, the size every plot of the report uses."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.5), dpi=80)
    return fig, ax


def fig_to_data_uri(fig) -> str:
    """The figure as an embedded PNG; the figure is closed."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=80)
    finally:
        plt.close(fig)
    return data_uri(buf.getvalue(), "image/png")


def plot_throughput(manifest: pd.DataFrame) -> str | None:
    """Cumulative clips finished against minutes since the first clip started inpainting."""
    first, _, _ = inpaint_span(manifest)
    finished = column(manifest, "inpaint_finished")
    finished = np.sort(finished[finished > 0].to_numpy(dtype=float))
    if first <= 0 or finished.size == 0:
        return None
    minutes = (finished - first) / 60.0
    fig, ax = _figure()
    ax.step(np.concatenate([[0.0], minutes]), np.arange(finished.size + 1), where="post")
    ax.set_xlabel("minutes since the first clip started")
    ax.set_ylabel("clips finished")
    ax.set_title("throughput")
    ax.grid(alpha=0.3)
    return fig_to_data_uri(fig)


def plot_seconds_per_clip(manifest: pd.DataFrame) -> str | None:
    """Histogram of inpainting seconds per clip, with the total of all stages beside it."""
    inpaint = column(manifest, "time_inpaint_s")
    inpaint = inpaint[inpaint > 0]
    if inpaint.empty:
        return None
    total = sum(column(manifest, name) for name in TIME_COLUMNS)
    total = total[total > 0]
    fig, ax = _figure()
    bins = np.histogram_bin_edges(np.concatenate([inpaint, total]), bins=min(30, max(5, len(total))))
    ax.hist(inpaint, bins=bins, alpha=0.7, label="inpaint")
    ax.hist(total, bins=bins, alpha=0.5, label="all stages")
    ax.set_xlabel("seconds per clip")
    ax.set_ylabel("clips")
    ax.set_title("seconds per clip")
    ax.legend(fontsize=8)
    return fig_to_data_uri(fig)


def plot_stage_breakdown(manifest: pd.DataFrame) -> str | None:
    """Bar chart of the mean seconds per clip of each stage."""
    present = [name for name in TIME_COLUMNS if name in manifest.columns]
    if manifest.empty or not present:
        return None
    means = [float(column(manifest, name).mean()) for name in present]
    fig, ax = _figure()
    labels = [name.removeprefix("time_").removesuffix("_s") for name in present]
    bars = ax.bar(labels, means, color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.margins(y=0.2)
    ax.set_ylabel("mean seconds per clip")
    ax.set_title("time per stage")
    return fig_to_data_uri(fig)


def plot_gpu_memory(manifest: pd.DataFrame) -> str | None:
    """Peak GPU memory of each clip, one column of points per inpainting worker."""
    peak = column(manifest, "peak_gpu_mem_gb")
    if manifest.empty or not (peak > 0).any():
        return None
    workers = column(manifest, "inpaint_worker", "").replace("", "unknown")
    names = sorted(workers.unique())
    fig, ax = _figure()
    for i, name in enumerate(names):
        values = peak[workers == name].to_numpy(dtype=float)
        jitter = np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(i + jitter, values, s=10, alpha=0.7)
        ax.hlines(values.max(), i - 0.3, i + 0.3, color="black", linewidth=1)
    if len(names) <= 16:
        labels = [_short_worker(n) for n in names]
        ax.set_xticks(range(len(names)), labels, rotation=30, ha="right", fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(names)} inpainting workers")
    ax.set_ylabel("peak GPU memory (GB)")
    ax.set_title("GPU memory per clip, by worker (line: worker max)")
    return fig_to_data_uri(fig)


def _short_worker(name: str) -> str:
    """A worker label short enough for a tick: ``node=… gpu=… pid=…`` keeps gpu and pid."""
    parts = dict(p.split("=", 1) for p in name.split() if "=" in p)
    if {"node", "gpu"} <= parts.keys():
        return f"{parts['node'][:6]} gpu{parts['gpu']}"
    return name[:24]


def plot_samples(samples: pd.DataFrame | None) -> str | None:
    """Driver RSS and clips waiting in ``.work`` over the run, from run_samples.csv."""
    if samples is None or samples.empty or "time_s" not in samples.columns:
        return None
    time_s = column(samples, "time_s")
    fig, ax = _figure()
    ax.plot(time_s, column(samples, "driver_rss_mb"), color="#4c72b0", label="driver RSS (MB)")
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("driver RSS (MB)", color="#4c72b0")
    right = ax.twinx()
    right.step(time_s, column(samples, "work_clips"), where="post", color="#dd8452")
    right.set_ylabel("clips in .work", color="#dd8452")
    ax.set_title("driver memory and clips waiting in .work")
    return fig_to_data_uri(fig)


def plot_score(manifest: pd.DataFrame, name: str, threshold: float | None) -> str | None:
    """Histogram of one quality score over the clips that have it, the threshold as a line."""
    values = pd.to_numeric(manifest[name], errors="coerce").dropna() if name in manifest.columns else pd.Series()
    if values.empty:
        return None
    fig, ax = _figure()
    ax.hist(values, bins=min(30, max(5, len(values))), color="#4c72b0")
    if threshold is not None:
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(name)
    ax.set_ylabel("clips")
    ax.set_title(f"{name} ({len(values)} clips; higher is worse)")
    return fig_to_data_uri(fig)


# ---------------------------------------------------------------------------------------------
# Thumbnails


def data_uri(payload: bytes, mime: str) -> str:
    """``payload`` as a base64 ``data:`` URI."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def shrink(image, width: int = THUMB_WIDTH):
    """A copy of the PIL image at most ``width`` pixels wide, aspect kept, in RGB."""
    from PIL import Image

    image = image.convert("RGB")
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def png_uri(image) -> str:
    """The PIL image as an embedded PNG."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return data_uri(buf.getvalue(), "image/png")


def image_thumb(path: Path) -> str | None:
    """A thumbnail of the picture at ``path``, or None when it is missing or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return png_uri(shrink(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # PIL's "broken file"
        return None


def video_frames(path: Path, count: int = GIF_FRAMES, width: int = THUMB_WIDTH) -> tuple[list, float]:
    """Up to ``count`` evenly spaced frames of the video (the first included), downscaled, and
    the seconds between them; ([], 0) when the file is missing or undecodable."""
    import av

    if not path.is_file():
        return [], 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or 8)
            wanted = pick_indices(stream.frames, count) if stream.frames > 0 else None
            frames = [shrink(frame.to_image(), width) for i, frame in enumerate(container.decode(stream))
                      if wanted is None or i in wanted]
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return [], 0.0
    total = stream.frames if wanted is not None else len(frames)
    if wanted is None:
        frames = [frames[i] for i in sorted(pick_indices(total, count))]
    return frames, (max(1.0, total / count) / fps if frames else 0.0)


def pick_indices(total: int, count: int) -> set[int]:
    """``count`` evenly spaced frame indices out of ``total``, the first one included."""
    step = max(1.0, total / count)
    return {int(i * step) for i in range(min(count, total))}


def gif_uri(frames: list, seconds_apart: float) -> str | None:
    """The frames as an embedded looping GIF."""
    if not frames:
        return None
    duration = int(min(500, max(80, seconds_apart * 1000)))
    from PIL import Image

    palette = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=255) for f in frames]
    buf = io.BytesIO()
    palette[0].save(buf, format="GIF", save_all=True, append_images=palette[1:], duration=duration,
                    loop=0, optimize=True)
    return data_uri(buf.getvalue(), "image/gif")


def side_by_side_middle(path: Path, width: int = WORST_THUMB_WIDTH) -> str | None:
    """The middle frame of a ``result_vis.mp4`` (original | masked | mask | result) as original and
    result side by side, each ``width`` wide; None when the file is missing or undecodable."""
    import av
    from PIL import Image

    if not path.is_file():
        return None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            middle = stream.frames // 2
            frame = next((f for i, f in enumerate(container.decode(stream)) if i >= middle), None)
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None
    if frame is None:
        return None
    image = frame.to_image()
    panel = image.width // 4
    original, result = (shrink(image.crop((x, 0, x + panel, image.height)), width) for x in (0, 3 * panel))
    both = Image.new("RGB", (original.width + result.width, original.height))
    both.paste(original, (0, 0))
    both.paste(result, (original.width, 0))
    return png_uri(both)


@dataclass
class ClipCard:
    """What one thumbnail card shows."""

    clip_id: str
    status: str
    degraded: bool
    original: str | None
    mask: str | None
    result: str | None
    preview: str | None
    files: dict[str, bool]
    absent: dict[str, str]  # the placeholder text of each image that is None


def absent_text(path: Path, mask_only: bool = False) -> str:
    """Why an image from ``path`` is not shown."""
    if path.is_file():
        return "unreadable"
    return "no result (mask only)" if mask_only else "missing"


def clip_card(output_dir: Path, row: dict[str, Any]) -> ClipCard:
    """Read one clip folder into a card; missing files become None."""
    clip_id = str(row["clip_id"])
    folder = output_dir / "clips" / clip_id
    frames, apart = video_frames(folder / "result.mp4")
    files = {name: (folder / name).is_file() for name in ("result.mp4", "result_vis.mp4", "mask.mp4")}
    mask_only = not files["result.mp4"] and files["mask.mp4"]
    return ClipCard(
        clip_id=clip_id, status=str(row.get("status", "ok")), degraded=bool(row.get("degraded", False)),
        original=image_thumb(folder / "frame0_original.png"), mask=image_thumb(folder / "mask0.png"),
        result=png_uri(frames[0]) if frames else None, preview=gif_uri(frames, apart),
        files=files, absent={"original": absent_text(folder / "frame0_original.png"),
                             "mask": absent_text(folder / "mask0.png"),
                             "result": absent_text(folder / "result.mp4", mask_only)})


def card_rows(manifest: pd.DataFrame, max_clips: int) -> list[dict[str, Any]]:
    """The manifest rows the grid shows: degraded clips first, else manifest order, capped."""
    if manifest.empty:
        return []
    order = manifest.assign(_degraded=column(manifest, "degraded", False))
    order = order.sort_values("_degraded", ascending=False, kind="stable")
    return order.head(max(0, max_clips)).to_dict("records")


# ---------------------------------------------------------------------------------------------
# HTML


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222;
       background: #fafafa; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
.meta { color: #666; font-size: 14px; }
table { border-collapse: collapse; font-size: 14px; background: #fff; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { font-family: monospace; font-size: 12px; white-space: pre-wrap; max-width: 700px; }
pre { background: #fff; border: 1px solid #ddd; padding: 8px; font-size: 12px; max-height: 220px;
      overflow: auto; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
img.plot { border: 1px solid #ddd; background: #fff; }
.note { color: #666; font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(510px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; font-size: 13px; }
.card.degraded { border-color: #e0a000; background: #fffbea; }
.frames { display: flex; gap: 4px; align-items: flex-start; margin-bottom: 4px; }
.info { display: flex; flex-direction: column; gap: 4px; }
.frames figure { margin: 0; width: 160px; }
.frames figcaption { font-size: 11px; color: #666; }
.frames img { max-width: 160px; display: block; }
.missing { display: inline-block; width: 156px; padding: 20px 0; text-align: center; color: #999;
           border: 1px dashed #ccc; font-size: 12px; }
.badge { font-size: 11px; padding: 1px 6px; border-radius: 8px; background: #eee; margin-left: 4px; }
.badge.degraded { background: #ffd966; }
img.broken { outline: 3px solid red; outline-offset: -3px; min-width: 40px; min-height: 20px; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    var img = images[i];
    if (img.complete && img.naturalWidth > 0) { loaded++; }
    else { img.classList.add("broken"); img.title = "broken image"; }
  }
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(loaded);
});
"""

esc = html.escape


def clip_href(clip_id: str, name: str = "") -> str:
    """The relative link to a clip's folder or to one of its files."""
    return f"clips/{quote(str(clip_id), safe='')}/{quote(name)}"


def img_tag(uri: str | None, alt: str, cls: str = "", missing: str = "missing") -> str:
    """An ``<img>`` for the data URI, or a placeholder when there is none."""
    if uri is None:
        return f'<span class="missing">{esc(missing)}</span>'
    cls_attr = f' class="{cls}"' if cls else ""
    return f'<img{cls_attr} alt="{esc(alt)}" src="{uri}">'


def table(headers: list[str] | None, rows: list[list[str | tuple[str, str]]]) -> str:
    """A table of already-escaped cell HTML; no header row when ``headers`` is None."""
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(rows_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def rows_cell(cell: str | tuple[str, str]) -> str:
    """One ``<td>``: a cell is its HTML, or (html, css class)."""
    if isinstance(cell, tuple):
        return f'<td class="{cell[1]}">{cell[0]}</td>'
    return f"<td>{cell}</td>"


def config_text(config: dict[str, Any] | None) -> str:
    """The config as indented YAML-like text, with secret-looking values hidden."""

    def lines(value: Any, indent: int) -> list[str]:
        pad = "  " * indent
        if isinstance(value, dict):
            out = []
            for key, item in value.items():
                if any(word in str(key).lower() for word in SECRET_WORDS) and item:
                    out.append(f"{pad}{key}: '***'")
                elif isinstance(item, (dict, list)) and item:
                    out += [f"{pad}{key}:", *lines(item, indent + 1)]
                else:
                    out.append(f"{pad}{key}: {scalar(item)}")
            return out
        if isinstance(value, list):
            out = []
            for item in value:
                sub = lines(item, indent + 1) if isinstance(item, (dict, list)) and item else None
                out += [f"{pad}-", *sub] if sub else [f"{pad}- {scalar(item)}"]
            return out
        return [pad + scalar(value)]

    def scalar(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, (dict, list)):  # empty ones
            return "{}" if isinstance(value, dict) else "[]"
        return "''" if value == "" else str(value)

    return "\n".join(lines(config or {}, 0))


def section_header(data: RunData, generated: str) -> str:
    """Title, folder, generation time and the headline counts."""
    counts = table(None, [[esc(k), (esc(v), "num")] for k, v in run_counts(data)])
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in data.notes)
    return (f"<h1>vp-ray run report</h1>"
            f'<p class="meta">output folder: <code>{esc(str(data.output_dir.resolve()))}</code><br>'
            f"generated: {esc(generated)}</p>{notes}<h2>Summary</h2>{counts}")


def section_config(config: dict[str, Any] | None) -> str:
    """The run's config, or a note that it was not recorded."""
    if config is None:
        return '<h2>Config</h2><p class="note">not recorded</p>'
    return f"<h2>Config</h2><pre>{esc(config_text(config))}</pre>"


def section_plots(data: RunData) -> str:
    """Every plot, or a one-line note in place of one whose data is empty."""
    m = data.manifest
    plots = [
        ("throughput: cumulative clips finished over time", plot_throughput(m),
         "throughput: no clip with known inpainting times"),
        ("seconds per clip", plot_seconds_per_clip(m), "seconds per clip: no inpainting times"),
        ("mean time per stage", plot_stage_breakdown(m), "time per stage: no clips"),
        ("peak GPU memory per clip by worker", plot_gpu_memory(m),
         "GPU memory: all peaks are 0 (CPU model or not measured)"),
        ("driver RSS and clips in .work over time", plot_samples(data.samples),
         "driver memory: run_samples.csv not found or empty"),
    ]
    images = "".join(img_tag(uri, alt, "plot") for alt, uri, _ in plots if uri)
    notes = "".join(f'<p class="note">{esc(note)}</p>' for _, uri, note in plots if not uri)
    return f'<h2>Plots</h2><div class="plots">{images}</div>{notes}'


def section_slowest(manifest: pd.DataFrame) -> str:
    """The clips that took longest to inpaint."""
    if manifest.empty:
        return '<h2>Slowest clips</h2><p class="note">none</p>'
    df = manifest.assign(_t=column(manifest, "time_inpaint_s"), _n=column(manifest, "num_frames"),
                         _a=column(manifest, "attempts", 1), _w=column(manifest, "inpaint_worker", ""))
    rows = [[f'<a href="{clip_href(r["clip_id"])}">{esc(str(r["clip_id"]))}</a>', (f"{r['_t']:.2f}", "num"),
             (str(int(r["_n"])), "num"), (str(int(r["_a"])), "num"), esc(r["_w"])]
            for r in df.nlargest(SLOWEST, "_t").to_dict("records")]
    return "<h2>Slowest clips</h2>" + table(["clip", "inpaint s", "frames", "attempts", "worker"], rows)


def section_failures(failures: pd.DataFrame) -> str:
    """Every failure (up to MAX_FAILURES), error text escaped and truncated."""
    if failures.empty:
        return '<h2>Failed clips</h2><p class="note">none</p>'
    shown = failures.head(MAX_FAILURES)
    cols = {name: column(shown, name, "") for name in ("clip_id", "failed_stage", "error_type", "error")}
    rows = []
    for i in range(len(shown)):
        error = cols["error"].iloc[i]
        error = error if len(error) <= ERROR_CHARS else error[:ERROR_CHARS] + " …"
        rows.append([esc(cols["clip_id"].iloc[i]), esc(cols["failed_stage"].iloc[i]),
                     esc(cols["error_type"].iloc[i]), (esc(error), "error")])
    more = len(failures) - len(shown)
    tail = f'<p class="note">{more} more failures in failures.parquet</p>' if more > 0 else ""
    return (f"<h2>Failed clips ({len(failures)})</h2>"
            + table(["clip", "stage", "error type", "error"], rows) + tail)


def _number(value: Any, digits: int = 4) -> str:
    """A metric's value for a table: 4 significant digits, n/a where there is none."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def section_evaluation(evaluation: dict[str, Any] | None, config: dict[str, Any] | None,
                       output_dir: Path) -> str:
    """The benchmark's numbers (evaluation.json) laid out as the paper's Table 2, then every metric."""
    if evaluation is None:
        return ('<h2>Evaluation</h2><p class="note">no evaluation.json: run the same command with '
                "task=evaluate to score the run against its references</p>")
    metrics = evaluation.get("metrics", {})
    index = 2 if evaluation.get("protocol") == "vpbench" else 3  # the protocol's metric of each column
    groups = "".join(f'<th colspan="{len(cols)}">{esc(group)}</th>' for group, cols in TABLE2)
    names = "".join(f"<th>{esc(col[0])} {col[1]}<br><code>{esc(col[index])}</code></th>"
                    for _, cols in TABLE2 for col in cols)
    used = [col[index] for _, cols in TABLE2 for col in cols]
    label = (f"{config['model']['name']} on {config['dataset']['name']}" if config and "model" in config
             and "dataset" in config else output_dir.resolve().name)
    values = "".join(f'<td class="num">{_number(metrics.get(name))}</td>' for name in used)
    head = (f'<table><thead><tr><th rowspan="2">run</th>{groups}</tr><tr>{names}</tr></thead>'
            f"<tbody><tr><td>{esc(label)}</td>{values}</tr></tbody></table>")
    about = (f'<p class="meta">protocol <code>{esc(str(evaluation.get("protocol")))}</code>: '
             f'{evaluation.get("scored", 0)} of {evaluation.get("rows", 0)} clip(s) scored, '
             f'{evaluation.get("frames", 0)} frames; averaged {esc(str(evaluation.get("averaging", "")))}. '
             "Values as evaluation.json holds them (not scaled); below each name, the metric it shows "
             "(README, \"Evaluation\", says what each measures).</p>")
    lines = [*evaluation.get("not_computed", {}).values(), *evaluation.get("notes", [])]
    notes = "".join(f'<p class="note">{esc(line)}</p>' for line in lines)
    rest = [[f"<code>{esc(name)}</code>", (_number(value), "num")] for name, value in metrics.items()
            if name not in used]
    others = f"<h3>Every other metric</h3>{table(['metric', 'value'], rest)}" if rest else ""
    return f"<h2>Evaluation (the paper's Table 2)</h2>{about}{head}{notes}{others}"


def section_quality(data: RunData, config: dict[str, Any] | None) -> str:
    """Each quality score's distribution, its worst clips with thumbnails, and the suspect clips."""
    m = data.manifest
    present = [name for name in QA_SCORES
               if name in m.columns and pd.to_numeric(m[name], errors="coerce").notna().any()]
    if not present:
        return ('<h2>Quality scores</h2><p class="note">no quality scores in manifest.parquet (a mask-only '
                "run, qa.enabled=false, or clips written by an older vp-ray)</p>")
    thresholds = (config or {}).get("qa") or {}
    legend = table(["score", "what it measures", "threshold"],
                   [[f"<code>{name}</code>", esc(QA_MEANING[name]),
                     (_number(thresholds.get(key)) if thresholds else "as the run's qa.*", "num")]
                    for name, key in QA_SCORES.items()])
    plots = "".join(img_tag(plot_score(m, name, thresholds.get(key)), f"distribution of {name}", "plot")
                    for name, key in QA_SCORES.items() if name in present)
    thumbs: dict[str, str | None] = {}  # a clip among the worst of several scores is decoded once

    def thumb(clip_id: str) -> str:
        if clip_id not in thumbs:
            thumbs[clip_id] = side_by_side_middle(data.output_dir / "clips" / clip_id / "result_vis.mp4")
        return img_tag(thumbs[clip_id], f"{clip_id} original and result, middle frame",
                       missing="result_vis.mp4 missing or unreadable")

    worst = []
    for name in present:
        values = pd.to_numeric(m[name], errors="coerce")
        rows = m.assign(_v=values).dropna(subset=["_v"]).nlargest(WORST, "_v", keep="first")
        flagged = short_name(name)
        body = [[(str(rank), "num"), f'<a href="{clip_href(r["clip_id"])}">{esc(str(r["clip_id"]))}</a>',
                 (f"<b>{_number(r['_v'], 3)}</b>" if flagged in str(r.get("qa_flags") or "").split(",")
                  else _number(r["_v"], 3), "num"), esc(str(r.get("status", ""))), thumb(str(r["clip_id"]))]
                for rank, r in enumerate(rows.to_dict("records"), 1)]
        worst.append(f"<h3>Worst {len(body)} by <code>{name}</code></h3>"
                     + table(["#", "clip", name, "status", "original | result (middle frame)"], body))
    return (f"<h2>Quality scores</h2>{legend}<div class=\"plots\">{plots}</div>{section_suspects(m, present)}"
            + "".join(worst))


def section_suspects(manifest: pd.DataFrame, present: list[str]) -> str:
    """The suspect clips, their flags and scores (the flagged ones in bold)."""
    suspects = manifest[column(manifest, "status", "ok") == "suspect"]
    if suspects.empty:
        return '<h3>Suspect clips</h3><p class="note">none: no score over its threshold</p>'
    shown = suspects.head(MAX_SUSPECTS).to_dict("records")
    body = []
    for r in shown:
        flags = str(r.get("qa_flags") or "").split(",")
        cells = [(f"<b>{_number(r[n], 3)}</b>" if short_name(n) in flags else _number(r[n], 3), "num")
                 for n in present]
        body.append([f'<a href="{clip_href(r["clip_id"])}">{esc(str(r["clip_id"]))}</a>', esc(",".join(flags)),
                     *cells])
    more = len(suspects) - len(shown)
    tail = f'<p class="note">{more} more suspect clips in manifest.parquet</p>' if more > 0 else ""
    return (f"<h3>Suspect clips ({len(suspects)})</h3>"
            + table(["clip", "flags", *present], body) + tail)


def card_html(card: ClipCard) -> str:
    """One thumbnail card: frame 0 as original, mask and result, an animated preview, links."""
    cid = esc(card.clip_id)
    absent, label = card.absent, card.clip_id
    stills = [("original", img_tag(card.original, f"{label} frame 0 original", missing=absent["original"])),
              ("mask", img_tag(card.mask, f"{label} mask 0", missing=absent["mask"])),
              ("result", img_tag(card.result, f"{label} frame 0 result", missing=absent["result"]))]
    preview = img_tag(card.preview, f"{label} animated preview", missing=absent["result"])
    links = "<br>".join(f'<a href="{clip_href(card.clip_id, name)}">{name}</a>' if present
                        else f'<span class="note">{name} missing</span>'
                        for name, present in card.files.items())
    badges = "".join([f'<span class="badge">{esc(card.status)}</span>' if card.status != "ok" else "",
                      '<span class="badge degraded">degraded</span>' if card.degraded else ""])
    cls = "card degraded" if card.degraded else "card"
    return (f'<div class="{cls}"><div class="frames">{_figures(stills)}</div>'
            f'<div class="frames">{_figures([("preview", preview)])}<div class="info">'
            f'<div><a href="{clip_href(card.clip_id)}"><b>{cid}</b></a>{badges}</div>'
            f"<div>{links}</div></div></div></div>")


def _figures(items: list[tuple[str, str]]) -> str:
    """Captioned images (or placeholders) for a card."""
    return "".join(f"<figure>{tag}<figcaption>{name}</figcaption></figure>" for name, tag in items)


def section_grid(data: RunData, max_clips: int) -> str:
    """The thumbnail grid, one card per manifest clip, capped at ``max_clips``."""
    rows = card_rows(data.manifest, max_clips)
    if not rows:
        return '<h2>Clips</h2><p class="note">no clips in manifest.parquet</p>'
    cards = "".join(card_html(clip_card(data.output_dir, row)) for row in rows)
    more = len(data.manifest) - len(rows)
    tail = f'<p class="note">{more} more clips in manifest.parquet</p>' if more > 0 else ""
    return (f"<h2>Clips ({len(data.manifest)})</h2><p class=\"meta\">degraded clips first, then manifest "
            f'order; frame 0 of each</p><div class="grid">{cards}</div>{tail}')


def render_report(data: RunData, config: dict[str, Any] | None = None, max_clips: int = 48,
                  generated: str | None = None) -> str:
    """The whole report page as one HTML string."""
    generated = generated or datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    body = "".join([section_header(data, generated), section_config(config), section_plots(data),
                    section_evaluation(data.evaluation, config, data.output_dir), section_quality(data, config),
                    section_slowest(data.manifest), section_failures(data.failures),
                    section_grid(data, max_clips)])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>vp-ray run report</title><style>{STYLE}</style></head>"
            f"<body>{body}<script>{SCRIPT}</script></body></html>\n")


def write_report(output_dir: str | os.PathLike, config: Config | None = None, *,
                 max_clips: int = 48) -> Path:
    """Write ``<output_dir>/report.html`` for a finished run (atomically) and return its path;
    ``config``: the run's, shown in the report (None: not recorded)."""
    data = read_run(output_dir)
    text = render_report(data, None if config is None else as_dict(config), max_clips=max_clips)
    path = Path(output_dir) / REPORT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
