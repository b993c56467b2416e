"""report.html: written for a real demo run and for hand-made folders, then opened in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config
from PIL import Image

from vp_ray.config import ClassicModelConfig, Config
from vp_ray.evaluation.qa import SCORES as QA_SCORES
from vp_ray.runtime import graph
from vp_ray.runtime.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS
from vp_ray.runtime.report import MAX_FAILURES, REPORT_COLUMNS, RunData, read_run, render_report, write_report

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
    # Plots: throughput, seconds per clip, stages, driver samples (GPU memory is 0 on CPU), and the
    # distribution of each of the 4 quality scores.
    assert text.count('class="plot"') == 4 + 4
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
                                                "segment_worker": "", "degraded": False, "attempts": 1,
                                                "qa_flags": ""} | {c: None for c in QA_SCORES}
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


def test_the_report_reads_only_the_manifest_columns_it_shows_and_shows_the_same(tmp_path):
    """A long run's manifest holds ~60 columns; the report reads ``REPORT_COLUMNS`` alone (the rest would
    cost the driver ~2.5 KiB per clip at the end of a run) and its page is the one all columns give."""
    rows = [{"clip_id": f"c{i:02d}", "status": "suspect" if i == 3 else "ok", "qa_flags": "seam" if i == 3 else "",
             "degraded": i == 5, "attempts": 2 if i == 5 else 1, "num_frames": 49, "peak_gpu_mem_gb": 20.0 + i,
             "inpaint_worker": f"w{i % 2}", "time_prepare_s": 0.5, "time_inpaint_s": 10.0 + i, "time_write_s": 1.0,
             "inpaint_started": 100.0 + 20 * i, "gpu_started": 100.5 + 20 * i, "denoise_started": 101.0 + 20 * i,
             "denoise_finished": 110.0 + 20 * i, "gpu_finished": 111.0 + 20 * i, "inpaint_finished": 112.0 + 20 * i,
             "qa_drift": 0.1 * i, "qa_flicker": 0.2, "qa_seam": 3.0 if i == 3 else 0.5, "qa_object": 0.01 * i,
             "warnings": "w" * 500, "prompt": "p" * 300, "video_path": f"/data/{i}.mp4"} for i in range(8)]
    out = fake_run(tmp_path / "out", rows, [])

    read = read_run(out)
    assert sorted(read.manifest.columns) == sorted(REPORT_COLUMNS)
    everything = RunData(out, pd.read_parquet(out / "manifest.parquet"), read.failures, read.samples, [])
    assert render_report(read, generated="now") == render_report(everything, generated="now")


def test_many_failures_and_clips_are_capped(tmp_path):
    rows = [{"clip_id": f"c{i:03d}"} for i in range(5)]
    failures = [{"clip_id": f"f{i}", "failed_stage": "prepare", "error_type": "ValueError", "error": "e",
                 "video_path": "", "warnings": ""} for i in range(MAX_FAILURES + 7)]
    out = fake_run(tmp_path / "out", rows, failures)

    text = write_report(out, Config(model=ClassicModelConfig()), max_clips=3).read_text()
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
    from vp_ray.tools.report import main

    out, _ = demo_run
    (out / "report.html").unlink()
    assert main([str(out), "--max-clips", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    assert (out / "report.html").read_text().count('class="card') == 1  # --max-clips 1 of 2


def test_quality_scores_show_their_distributions_worst_clips_and_the_suspects(tmp_path):
    rows = [{"clip_id": f"c{i:02d}", "qa_drift": 0.1 * i, "qa_flicker": 1.0 + 0.01 * i, "qa_seam": 1.0 + 0.05 * i,
             "qa_object": 0.0} for i in range(25)]
    rows[24].update(status="suspect", qa_flags="seam")               # 2.2 > 2
    rows[3].update(status="suspect", qa_flags="object", qa_object=0.8)
    rows[5].update(qa_seam=None)                                     # not measured: in no list
    out = fake_run(tmp_path / "out", rows, [])

    thresholds = {"max_drift": 8.0, "max_flicker": 3.0, "max_seam": 2.0, "max_object": 0.5}
    text = write_report(out, {"qa": thresholds}).read_text()
    counts = dict(re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([^<]+)</td></tr>", text))
    assert counts["clips ok"] == "23" and counts["suspect (quality scores)"] == "2"
    for name in QA_SCORES:
        assert f'alt="distribution of {name}"' in text
        worst = text[text.index(f"Worst 20 by <code>{name}</code>"):]
        worst = worst[:worst.index("</table>")]
        assert worst.count("<tr>") == 1 + 20  # the header and 20 clips
    seam = text[text.index("Worst 20 by <code>qa_seam</code>"):]
    seam = seam[:seam.index("</table>")]
    assert seam.index('href="clips/c24/"') < seam.index('href="clips/c23/"')  # the worst first
    assert '<b>2.2</b>' in seam and 'href="clips/c05/"' not in seam          # flagged in bold; unmeasured left out
    assert seam.count("result_vis.mp4 missing or unreadable") == 20          # no clip folders here
    suspects = text[text.index("<h3>Suspect clips (2)</h3>"):]
    suspects = suspects[:suspects.index("</table>")]
    assert 'href="clips/c03/"' in suspects and 'href="clips/c24/"' in suspects and "<td>object</td>" in suspects
    assert '<td class="num">0.5</td>' in text  # the thresholds, from the run's config


def test_the_worst_clips_show_original_and_result_at_the_middle_frame(tmp_path):
    from vp_ray.clip.video import write_video

    out = fake_run(tmp_path / "out", [{"clip_id": "a", "qa_seam": 3.0}], [])
    vis = np.zeros((5, 32, 4 * 32, 3), np.uint8)   # original | masked | mask | result
    vis[2, :, :32] = (220, 30, 30)                  # the middle frame's original: red
    vis[2, :, 96:] = (30, 30, 220)                  # and its result: blue
    (out / "clips" / "a").mkdir(parents=True)
    write_video(out / "clips" / "a" / "result_vis.mp4", vis, 8.0)

    text = write_report(out).read_text()
    uri = re.search(r'alt="a original and result, middle frame" src="data:image/png;base64,([^"]+)"',
                    text).group(1)
    with Image.open(io.BytesIO(base64.b64decode(uri))) as image:
        picture = np.asarray(image.convert("RGB")).astype(int)
    assert picture.shape[1] == 2 * 32
    assert np.abs(picture[:, :32].mean(axis=(0, 1)) - (220, 30, 30)).max() < 20
    assert np.abs(picture[:, 32:].mean(axis=(0, 1)) - (30, 30, 220)).max() < 20


def test_an_evaluation_is_laid_out_as_the_papers_table_2(tmp_path):
    out = fake_run(tmp_path / "out", [{"clip_id": "a"}], [])
    metrics = {"psnr": 30.0, "masked_psnr": 23.3212, "masked_ssim": 0.8912, "masked_lpips": None,
               "masked_mse": 0.0107, "masked_mae": 0.0338, "clip_score": 21.47, "masked_region_clip_score": 19.2,
               "fvid": None}
    (out / "evaluation.json").write_text(json.dumps({
        "protocol": "vpbench", "rows": 1, "scored": 1, "frames": 49, "averaging": "over all frames",
        "metrics": metrics, "not_computed": {"lpips": "lpips: not computed (null columns): needs X"},
        "notes": []}))

    text = write_report(out, {"model": {"name": "videopainter"}, "dataset": {"name": "pexels"}}).read_text()
    section = text[text.index("<h2>Evaluation"):text.index("<h2>Quality")]
    groups = re.findall(r'<th colspan="(\d)">([^<]+)</th>', section)
    assert groups == [("5", "Masked region preservation"), ("2", "Text alignment"), ("1", "Video quality")]
    columns = re.findall(r"<th>([^<]+?) [↑↓]<br><code>(\w+)</code></th>", section)
    assert columns == [("PSNR", "masked_psnr"), ("SSIM", "masked_ssim"), ("LPIPS", "masked_lpips"),
                       ("MSE", "masked_mse"), ("MAE", "masked_mae"), ("CLIP Sim", "clip_score"),
                       ("CLIP Sim (M)", "masked_region_clip_score"), ("FVID", "fvid")]
    row = re.search(r"<tbody><tr><td>videopainter on pexels</td>(.*?)</tr>", section).group(1)
    assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["23.32", "0.8912", "n/a", "0.0107", "0.0338",
                                                                 "21.47", "19.2", "n/a"]
    assert "lpips: not computed (null columns): needs X" in section
    assert "<code>psnr</code>" in section  # every other metric below the table
    # Under eval.protocol=hole, the same columns ask the same of the background outside the hole.
    (out / "evaluation.json").write_text(json.dumps({"protocol": "hole", "metrics": {"out_psnr": 40.0}}))
    section = write_report(out).read_text()
    assert re.findall(r"<br><code>(\w+)</code></th>", section)[:2] == ["out_psnr", "out_ssim"]
    assert '<td>out</td><td class="num">40</td>' in section  # no config: the folder names the run
