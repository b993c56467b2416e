"""report.html: written for a real demo run and for hand-made folders, then opened in headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import compose_config
from PIL import Image

from vp_ray import graph
from vp_ray.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS
from vp_ray.report import MAX_FAILURES, write_report

SMALL = ["model.height=120", "model.width=180", "dilate_size=4", "cluster.num_cpus=2"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo_run(ray_local, tmp_path_factory):
    """A finished run of 2 short demo clips (classic model, CPU): its output folder and config."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = compose_config([f"output_dir={tmp / 'out'}", f"dataset.path={tmp / 'demo'}",
                          "dataset.demo_num_clips=2", "dataset.demo_num_frames=9", *SMALL])
    graph.run(cfg)
    return tmp / "out", cfg


def chromium() -> str:
    """The Chromium binary, or skip (fail when VP_RAY_REQUIRE_BROWSER is set) when there is none."""
    found = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
    if found:
        return found
    if os.environ.get("VP_RAY_REQUIRE_BROWSER"):
        pytest.fail("VP_RAY_REQUIRE_BROWSER is set but no chromium was found at /usr/bin/chromium or "
                    "on PATH (apt-get install chromium)")
    pytest.skip("chromium not installed (set VP_RAY_REQUIRE_BROWSER=1 to make this a failure)")


def run_chromium(binary, tmp_path, *args):
    """Chromium headless with a throw-away profile; its stdout."""
    proc = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def embedded_images(text):
    """The decoded payloads of every data: URI image in the page."""
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/(?:png|gif);base64,([^"]+)"', text)]


@pytest.mark.slow
def test_report_of_a_demo_run_is_self_contained(demo_run):
    out, cfg = demo_run
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == 2
    path = write_report(out, cfg)
    assert path == out / "report.html" and path.is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".report.html")]  # no temp file left
    text = path.read_text()

    assert "vp-ray run report" in text and "not recorded" not in text
    assert "demo_num_clips: 2" in text  # the config
    # Nothing fetched from anywhere: every image inline, every link relative to the folder.
    assert not re.search(r'(src|href)="(https?:|//|/)', text) and "<link" not in text
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    for clip_id in manifest.clip_id:
        for name in ("result.mp4", "result_vis.mp4", "mask.mp4"):
            assert f'href="clips/{clip_id}/{name}"' in text
            assert (out / "clips" / clip_id / name).is_file()
        assert f'href="clips/{clip_id}/"' in text
    # Plots: throughput, seconds per clip, stages, driver samples; GPU memory is 0 on CPU.
    assert text.count('class="plot"') == 4
    assert "GPU memory: all peaks are 0" in text
    # Per clip: original, mask, first result frame (PNG) and a preview GIF of several frames.
    images = [Image.open(io.BytesIO(b)) for b in embedded_images(text)]
    gifs = [im for im in images if im.format == "GIF"]
    assert len(gifs) == 2 and all(im.n_frames > 1 and im.width <= 160 for im in gifs)
    thumbs = [im for im in images if im.format == "PNG" and im.width <= 160]
    assert len(thumbs) == 3 * 2


@pytest.mark.slow
def test_report_opens_in_headless_chromium(demo_run, tmp_path):
    binary = chromium()
    out, cfg = demo_run
    report = write_report(out, cfg)
    url = report.resolve().as_uri()

    shot = tmp_path / "shot.png"
    run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", url)
    assert shot.is_file()
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    assert len(colours) > 50, "the screenshot is blank"

    dom = run_chromium(binary, tmp_path, "--dump-dom", "--virtual-time-budget=5000", url)
    body = re.search(r"<body[^>]*>", dom).group(0)
    loaded = re.search(r'data-images-loaded="(\d+)"', body)
    total = re.search(r'data-images-total="(\d+)"', body)
    assert loaded and total, f"the page's load script did not run: {body}"
    assert int(loaded.group(1)) == int(total.group(1)) > 0, body
    assert 'class="broken"' not in dom


def fake_run(folder, manifest_rows, failure_rows, drop=()):
    """An output folder with only the two parquet files (no clip files), some columns dropped."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {c: 0 for c in MANIFEST_COLUMNS} | {"status": "ok", "warnings": "", "inpaint_worker": "w0",
                                                "segment_worker": "", "degraded": False, "attempts": 1}
    manifest = pd.DataFrame([base | row for row in manifest_rows], columns=MANIFEST_COLUMNS)
    manifest.drop(columns=list(drop)).to_parquet(folder / "manifest.parquet")
    pd.DataFrame(failure_rows, columns=FAILURE_COLUMNS).to_parquet(folder / "failures.parquet")
    return folder


def test_failures_are_escaped_and_missing_files_do_not_crash(tmp_path):
    rows = [{"clip_id": "slow<1>", "time_inpaint_s": 9.5, "num_frames": 49, "attempts": 3, "degraded": True,
             "peak_gpu_mem_gb": 30.5, "inpaint_started": 100.0, "inpaint_finished": 200.0},
            {"clip_id": "fast", "status": "done_before", "time_inpaint_s": 1.0, "inpaint_started": 150.0,
             "inpaint_finished": 460.0, "peak_gpu_mem_gb": 20.0, "inpaint_worker": "w1"}]
    failures = [{"clip_id": "bad", "failed_stage": "inpaint", "error_type": "RuntimeError",
                 "error": "<script>alert(1)</script> & " + "x" * 2000, "video_path": "v.mp4", "warnings": ""}]
    out = fake_run(tmp_path / "out", rows, failures, drop=("step_s_median", "step_s_max", "time_segment_s"))

    text = write_report(out).read_text()  # config=None
    assert "not recorded" in text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; " + "x" * 100 in text
    assert "x" * 600 not in text  # truncated to 500 characters
    assert "slow&lt;1&gt;" in text and 'href="clips/slow%3C1%3E/"' in text
    counts = dict(re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([^<]+)</td></tr>", text))
    assert counts["clips ok"] == "1" and counts["done before"] == "1" and counts["failed"] == "1"
    assert counts["degraded"] == "1" and counts["retried (attempts &gt; 1)"] == "1"
    assert counts["inpainting wall span"] == "6.0 min" and counts["clips/hour over that span"] == "20.0"
    # The clip folders do not exist: placeholders, no images for them, and the degraded clip first.
    assert text.count('<span class="missing">missing</span>') == 2 * 2 * 2
    assert "result.mp4 missing" in text and "no result (mask only)" not in text
    assert text.index("clips/slow%3C1%3E/") < text.index('href="clips/fast/"')
    assert 'alt="peak GPU memory per clip by worker"' in text


def test_many_failures_and_clips_are_capped(tmp_path):
    rows = [{"clip_id": f"c{i:03d}"} for i in range(5)]
    failures = [{"clip_id": f"f{i}", "failed_stage": "prepare", "error_type": "ValueError", "error": "e",
                 "video_path": "", "warnings": ""} for i in range(MAX_FAILURES + 7)]
    out = fake_run(tmp_path / "out", rows, failures)

    text = write_report(out, {"model": {"name": "classic"}}, max_clips=3).read_text()
    assert "7 more failures in failures.parquet" in text
    assert "2 more clips in manifest.parquet" in text
    assert text.count('<div class="card">') == 3
    # No inpainting times at all: notes in place of the plots, and no crash.
    assert "throughput: no clip with known inpainting times" in text
    assert "seconds per clip: no inpainting times" in text


def test_an_empty_folder_still_gets_a_report(tmp_path):
    text = write_report(tmp_path).read_text()
    assert "manifest.parquet not found" in text and "no clips in manifest.parquet" in text


def test_the_page_flags_a_broken_image(tmp_path):
    binary = chromium()
    text = write_report(fake_run(tmp_path / "out", [{"clip_id": "a"}], [])).read_text()
    broken = tmp_path / "out" / "broken.html"
    bad = '<img alt="bad" src="data:image/png;base64,AAAA">'
    broken.write_text(text.replace("<h2>Plots</h2>", "<h2>Plots</h2>" + bad))

    dom = run_chromium(binary, tmp_path, "--dump-dom", "--virtual-time-budget=5000", broken.as_uri())
    body = re.search(r"<body[^>]*>", dom).group(0)
    total = int(re.search(r'data-images-total="(\d+)"', body).group(1))
    assert int(re.search(r'data-images-loaded="(\d+)"', body).group(1)) == total - 1
    assert bad.replace(">", ' class="broken" title="broken image">') in dom


@pytest.mark.slow
def test_the_report_can_be_written_again_from_the_command_line(demo_run, capsys):
    from vp_ray.report import main

    out, _ = demo_run
    (out / "report.html").unlink()
    assert main([str(out), "--max-clips", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    assert (out / "report.html").read_text().count('class="card') == 1  # --max-clips 1 of 2
