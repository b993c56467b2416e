"""Compare two runs of the same clips, e.g. exact against an approximate speed mode.

    python -m vp_ray.tools.compare EXACT_DIR OTHER_DIR [--out DIR] [--max-videos N]

For every clip that both output folders hold complete (their ``manifest.parquet``), the two
``result.mp4`` are compared frame by frame: PSNR over the whole frame and over the inpainted region
(the clip's ``mask.mp4`` in EXACT_DIR), and SSIM; and the paper's metrics of OTHER with EXACT as the
reference, as ``task=evaluate`` computes them (README, "Evaluation"): ``paper_*`` (PSNR, SSIM, MSE,
MAE, LPIPS on values in [0, 1], torchmetrics' SSIM, the mean of the frames) over the whole frame and
``hole_*`` inside the inpainted region (LPIPS where its weights are found, else null and one line
saying which file). ``<out>/compare.csv`` gets one row per clip,
``<out>/videos/<clip_id>.mp4`` shows EXACT | OTHER | their difference (x4) side by side, and a summary
(median and worst clip) is printed. ``--out`` defaults to ``OTHER_DIR/compare``.

Random weights make every video noise, so only a run with the real weights says whether a mode's
differences matter; this is the tool to judge them with.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vp_ray.clip import video
from vp_ray.clip.atomic import atomic_path
from vp_ray.clip.outputs import clip_dir
from vp_ray.evaluation import clip_scores

DIFF_GAIN = 4  # differences of a few levels would be invisible unamplified


def complete_clips(output_dir: Path) -> set[str]:
    manifest = output_dir / "manifest.parquet"
    if not manifest.is_file():
        raise SystemExit(f"{output_dir} holds no manifest.parquet: not a finished run's output folder")
    return set(pd.read_parquet(manifest, columns=["clip_id"]).clip_id)


def paper_metrics(exact: np.ndarray, other: np.ndarray, masks: np.ndarray | None, lpips=None) -> dict[str, float]:
    """The paper's pixel metrics of ``other`` against ``exact`` (the reference), whole frame and, with
    ``masks``, inside the inpainted region (the ``hole`` protocol's definitions)."""
    from vp_ray.evaluation import pixel

    names = ("psnr", "ssim", "mse", "mae", "lpips")
    values: dict[str, list[float]] = {f"{scope}_{name}": [] for scope in ("paper", "hole") for name in names}
    for t, (reference, result) in enumerate(zip(exact, other)):
        r, c = reference.astype(np.float64) / 255, result.astype(np.float64) / 255
        for scope, region in (("paper", None), ("hole", None if masks is None else masks[t])):
            if scope == "hole" and (region is None or not region.any()):
                continue
            keep = 1.0 if region is None else region[..., None]
            values[f"{scope}_psnr"].append(pixel.psnr(r, c, region))
            values[f"{scope}_ssim"].append(pixel.ssim(r * keep, c * keep, region))
            values[f"{scope}_mse"].append(pixel.mse(r, c, region))
            values[f"{scope}_mae"].append(pixel.mae(r, c, region))
            if lpips is not None:
                values[f"{scope}_lpips"].append(lpips.distance(r * keep, c * keep))
    return {name: float(np.mean(column)) if column else math.nan for name, column in values.items()}


def load_lpips_if_found():
    """LPIPS from the files ``task=evaluate`` uses (ckpt/ or the usual caches), or None and one line."""
    from vp_ray.config import EvalConfig
    from vp_ray.evaluation.learned import load_lpips
    from vp_ray.evaluation.weights import lpips_weights

    found = lpips_weights(EvalConfig())
    if not found.found:
        print(found.notice(), file=sys.stderr)
        return None
    return load_lpips(found)


def compare_clip(exact_dir: Path, other_dir: Path, clip_id: str,
                 lpips=None) -> tuple[dict, tuple[np.ndarray, float] | None]:
    """One clip's scores, and its side-by-side frames with their frame rate (None: not comparable)."""
    exact, fps = video.read_video(clip_dir(exact_dir, clip_id) / "result.mp4")
    other, _ = video.read_video(clip_dir(other_dir, clip_id) / "result.mp4")
    row = {"clip_id": clip_id, "frames": len(exact), "other_frames": len(other)}
    if exact.shape != other.shape:
        return {**row, "error": f"results differ in shape: {exact.shape} vs {other.shape}"}, None
    masks = video.read_video(clip_dir(exact_dir, clip_id) / "mask.mp4")[0][..., 0] > 127
    if masks.shape != exact.shape[:3]:  # restore_size=true: the result is at the source's size, the mask not
        masks = None
    diff = np.abs(exact.astype(np.int16) - other)
    row.update(psnr=clip_scores.psnr(exact, other), ssim=clip_scores.ssim(exact, other),
               psnr_inpainted=clip_scores.psnr(exact, other, masks) if masks is not None else math.nan,
               max_abs_diff=int(diff.max()), **paper_metrics(exact, other, masks, lpips))
    shown = np.clip(diff * DIFF_GAIN, 0, 255).astype(np.uint8)
    return row, (np.concatenate([exact, other, shown], axis=2), fps)


def compare_runs(exact_dir: Path, other_dir: Path, out: Path, max_videos: int = 50) -> pd.DataFrame:
    clips = sorted(complete_clips(exact_dir) & complete_clips(other_dir))
    if not clips:
        raise SystemExit(f"no clip is complete in both {exact_dir} and {other_dir}")
    rows = []
    lpips = load_lpips_if_found()
    for number, clip_id in enumerate(clips):
        try:
            row, side_by_side = compare_clip(exact_dir, other_dir, clip_id, lpips)
        except Exception as error:  # noqa: BLE001 - one unreadable clip must not end the comparison
            row, side_by_side = {"clip_id": clip_id, "error": f"{type(error).__name__}: {error}"}, None
        if side_by_side is not None and number < max_videos:
            frames, fps = side_by_side
            (out / "videos").mkdir(parents=True, exist_ok=True)
            video.write_video(out / "videos" / f"{clip_id}.mp4", frames, fps)
        rows.append(row)
        print(f"\r{number + 1}/{len(clips)} clips compared", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "compare.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table


def summary(table: pd.DataFrame) -> str:
    scored = table.dropna(subset=["psnr"]) if "psnr" in table else table.iloc[0:0]
    lines = [f"{len(scored)} clips compared"]
    if len(scored) < len(table):
        lines[0] += f", {len(table) - len(scored)} not comparable (see compare.csv's error column)"
    if len(scored):
        differ = scored[np.isfinite(scored.psnr)]   # identical results have an infinite PSNR
        worst = scored.loc[scored.ssim.idxmin()]
        lines.append(f"{len(scored) - len(differ)} identical; over the {len(differ)} that differ: PSNR median "
                     f"{differ.psnr.median():.2f} dB, inpainted region "
                     f"{differ.psnr_inpainted.replace(np.inf, np.nan).median():.2f} dB")
        lines.append(f"SSIM median {scored.ssim.median():.4f}, lowest {worst.ssim:.4f} ({worst.clip_id})")
        paper = [f"{name.removeprefix('paper_').upper()} {scored[name].replace(np.inf, np.nan).mean():.4f}"
                 for name in ("paper_psnr", "paper_ssim", "paper_lpips", "paper_mse", "paper_mae")
                 if name in scored and scored[name].notna().any()]
        lines.append("the paper's metrics, OTHER against EXACT, mean over clips: " + ", ".join(paper))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exact_dir", type=Path, help="output folder of the reference run (e.g. exact mode)")
    parser.add_argument("other_dir", type=Path, help="output folder of the run to judge against it")
    parser.add_argument("--out", type=Path, help="where compare.csv and videos/ go (default: OTHER_DIR/compare)")
    parser.add_argument("--max-videos", type=int, default=50, help="side-by-side videos of the first N clips")
    args = parser.parse_args(argv)
    out = args.out or args.other_dir / "compare"
    table = compare_runs(args.exact_dir, args.other_dir, out, args.max_videos)
    print(summary(table))


if __name__ == "__main__":
    main()
