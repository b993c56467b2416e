"""``python -m vp_ray.tools.report OUTPUT_DIR``: write a finished run's report.html again."""

from __future__ import annotations

import argparse
from pathlib import Path

from vp_ray.runtime.report import write_report


def main(argv: list[str] | None = None) -> int:
    """``python -m vp_ray.tools.report OUTPUT_DIR [--max-clips N]``: write the report of a run folder again."""
    parser = argparse.ArgumentParser(prog="python -m vp_ray.tools.report", description=main.__doc__)
    parser.add_argument("output_dir")
    parser.add_argument("--max-clips", type=int, default=48, help="clips shown as thumbnails (default 48)")
    args = parser.parse_args(argv)
    if not (Path(args.output_dir) / "manifest.parquet").is_file():
        parser.error(f"{args.output_dir} holds no manifest.parquet: not a finished run's output folder")
    print(write_report(args.output_dir, max_clips=args.max_clips))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
