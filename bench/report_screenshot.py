"""Write a run folder's report.html and take a screenshot of it in headless Chromium.

    python bench/report_screenshot.py OUTPUT_DIR PNG_PATH [--width 1280] [--height 2000] [--max-kb 400]

Machine: CPUs only; Chromium (`apt-get install chromium`).

The config shown is the newest ``OUTPUT_DIR/logs/*/.hydra/config.yaml`` (what launch.py ran), if
any. The PNG is downscaled until it is under --max-kb (docs/report.png is made this way from a
`python launch.py output_dir=...` demo run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import _common

from vp_ray.runtime.report import write_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    """The Chromium binary: /usr/bin/chromium, else one on PATH."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_config(output_dir: Path) -> dict | None:
    """The config of the newest launch.py run logged in the folder, or None."""
    configs = sorted(output_dir.glob("logs/*/.hydra/config.yaml"))
    if not configs:
        return None
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(configs[-1]), resolve=False)


def screenshot(chromium: str, html: Path, png: Path, width: int, height: int) -> None:
    """Render ``html`` into ``png`` at the given window size."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                        f"--window-size={width},{height}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def shrink_png(png: Path, max_kb: int) -> None:
    """Downscale the PNG (in steps of 0.85) until it is at most ``max_kb`` KiB."""
    from PIL import Image

    with Image.open(png) as image:
        image = image.convert("RGB")
    scale = 1.0
    while png.stat().st_size > max_kb * 1024 and scale > 0.2:
        scale *= 0.85
        size = (round(image.width * scale), round(image.height * scale))
        image.resize(size, Image.Resampling.LANCZOS).save(png, optimize=True)


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--max-kb", type=int, default=400)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        _common.refuse("needs Chromium (apt-get install chromium)")
    report = write_report(args.output_dir, run_config(args.output_dir))
    args.png.parent.mkdir(parents=True, exist_ok=True)
    screenshot(chromium, report, args.png, args.width, args.height)
    shrink_png(args.png, args.max_kb)
    print(f"{report}\n{args.png} ({args.png.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
