"""The review server on a run of 10,000 clips: first page, filters, a verdict, new clips, memory.

    python bench/review_scale.py [--clips 10000] [--repeats 5] [--out bench/runs/review_scale.json]

Machine: CPUs only (2 cores: about 1 minute); the project's packages with the `review` extra; Chromium,
chromedriver and selenium for the browser's figure (left out where missing).

Writes a synthetic output folder in a temporary directory: a manifest of ``--clips`` rows (random
quality scores, statuses ok / suspect / done_before, some degraded), failures for 3 % more clips, one
folder per manifest clip with its meta.json and a 480x720 frame0_with_mask.png (a demo clip's texture
and a disc, one file hard-linked into every folder), and verdicts of a fifth of the clips in review.parquet. Then starts
``python -m vp_ray.review`` on it as a subprocess, as a user would, and times over HTTP on 127.0.0.1:

* the first page: the HTML, app.js, the columns, the first 48 clips and the status, as the page asks for
  them, then the 48 thumbnails (made from the PNGs on first request);
* filters and sorts over the whole table (each ``--repeats`` times; the median and the slowest);
* the previous/next clip under a filter; a verdict written (review.parquet read, changed, written);
* 100 clip folders committed while the server runs, until the server lists them;
* in headless Chromium: from opening the URL to the first 48 cards with their thumbnails drawn.

Besides the wall clock, the server's CPU time (user + system) for the first page, the thumbnails and each
filter: the work itself, which other jobs on a shared machine disturb less. Then the server's resident
memory (RSS) and its peak (VmHWM). SAM2 is not loaded: it loads on the
first click, and clicks are not part of this measure. Prints one JSON line.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

_common.require_modules("fastapi", "uvicorn", "cv2", "pandas")

import cv2
import numpy as np
import pandas as pd

from vp_ray.clip.demo import background
from vp_ray.review import store
from vp_ray.runtime.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS

FILTERS = {
    "suspect clips": "f=status:=:suspect",
    "qa_seam > 1.5, worst first": "f=qa_seam:>:1.5&sort=qa_seam&desc=1",
    "prompt contains 'street', by qa_flicker": "f=prompt:~:street&sort=qa_flicker&desc=1",
    "unreviewed and degraded": "f=review_verdict:empty:&f=degraded:=:true",
    "text search in ids and prompts": "q=clip_0042",
}


def synthetic_run(out: Path, clips: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"clip_{i:05d}" for i in range(clips)]
    statuses = rng.choice(["ok", "suspect", "done_before"], size=clips, p=[0.8, 0.1, 0.1])
    manifest = pd.DataFrame({c: None for c in MANIFEST_COLUMNS}, index=range(clips))
    manifest = manifest.assign(
        clip_id=ids, status=statuses, video_path=[f"/data/videos/{i}.mp4" for i in ids],
        prompt=rng.choice(["an empty street", "a quiet beach", "a living room", "a forest path"], size=clips),
        mask_kind="npz", output_dir=[str(out / "clips" / i) for i in ids],
        result_path=[str(out / "clips" / i / "result.mp4") for i in ids], num_frames=49, out_fps=8.0,
        seconds=6.125, source_width=1280, source_height=720, source_fps=30.0,
        effective_seed=rng.integers(0, 2**31, clips), effective_max_seconds=6.0, attempts=1,
        degraded=rng.random(clips) < 0.02, peak_gpu_mem_gb=rng.uniform(20, 36, clips), memory_plan="resident",
        mask_area=rng.uniform(0.01, 0.3, clips), warnings="", time_prepare_s=rng.uniform(0.2, 0.5, clips),
        time_inpaint_s=rng.uniform(90, 110, clips), time_write_s=rng.uniform(2, 4, clips),
        qa_drift=rng.gamma(2, 1, clips), qa_flicker=rng.gamma(4, 0.4, clips), qa_seam=rng.gamma(8, 0.15, clips),
        qa_object=rng.uniform(0, 1, clips), qa_flags="", review_verdict="", review_requeue="")
    out.mkdir(parents=True)
    frame = background(480, 720, rng)  # a demo clip's smooth texture, as a frame compresses in a PNG
    cv2.circle(frame, (300, 240), 80, (40, 40, 230), -1)
    cv2.imwrite(str(out / "frame.png"), frame)
    for row in manifest.itertuples():
        folder = out / "clips" / row.clip_id
        folder.mkdir(parents=True)
        os.link(out / "frame.png", folder / "frame0_with_mask.png")
        (folder / "meta.json").write_text(json.dumps({"clip_id": row.clip_id, "status": row.status}))
    manifest.to_parquet(out / "manifest.parquet")
    failed = [f"failed_{i:05d}" for i in range(clips * 3 // 100)]
    pd.DataFrame({"clip_id": failed, "failed_stage": "prepare", "error_type": "decode", "error": "corrupt",
                  "video_path": "", "warnings": ""}, columns=FAILURE_COLUMNS).to_parquet(out / "failures.parquet")
    reviewed = rng.choice(ids, size=clips // 5, replace=False)
    store.ReviewStore(out).update(list(reviewed),
                                  lambda row: {**row, "verdict": str(rng.choice(["accepted", "rejected"]))})


def get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[float, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    connection.close()
    assert response.status == 200, (path, response.status, payload[:300])
    return elapsed, payload


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user + system): the server's work, which other jobs on a shared
    machine disturb less than they disturb the wall clock."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024}


def browser_first_page(port: int) -> float | None:
    """Seconds from opening the URL in headless Chromium to 48 cards with their thumbnails drawn."""
    if not (os.access("/usr/bin/chromium", os.X_OK) and os.access("/usr/bin/chromedriver", os.X_OK)):
        return None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        start = time.perf_counter()
        driver.get(f"http://127.0.0.1:{port}/")
        done = ("const imgs = [...document.querySelectorAll('.card img')];"
                "return imgs.length === 48 && imgs.every(i => i.complete && i.naturalWidth > 0);")
        while not driver.execute_script(done):
            if time.perf_counter() - start > 120:
                raise TimeoutError("the first page did not draw in 120 s")
            time.sleep(0.01)
        return time.perf_counter() - start
    finally:
        driver.quit()


def main() -> None:
    arguments = _common.parser(__doc__)
    arguments.add_argument("--clips", type=int, default=10000)
    arguments.add_argument("--repeats", type=int, default=5)
    _common.add_out(arguments, "review_scale.json")
    args = arguments.parse_args()
    results: dict = {"clips": args.clips, "failures": args.clips * 3 // 100, "cpus": os.cpu_count(),
                     "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        synthetic_run(out, args.clips)
        results["make_folder_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "vp_ray.review", str(out), "--port", "0"],
                                  cwd=_common.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines = [server.stdout.readline(), server.stdout.readline()]
            results["server_start_s"] = round(time.perf_counter() - start, 2)
            port = int(lines[1].split()[-1].rsplit(":", 1)[1].strip("/"))

            used = cpu_seconds(server.pid)
            page = [get(port, path)[0] for path in ("/", "/static/app.js", "/api/columns",
                                                     "/api/clips?offset=0&limit=48", "/api/status")]
            page_cpu, used = cpu_seconds(server.pid) - used, cpu_seconds(server.pid)
            first = json.loads(get(port, "/api/clips?offset=0&limit=48")[1])
            used = cpu_seconds(server.pid)
            thumbs = [get(port, f"/api/thumbs/{row['clip_id']}")[0] for row in first["rows"]]
            results["first_page"] = {"requests_s": round(sum(page), 3), "requests_cpu_s": round(page_cpu, 2),
                                     "clips_request_s": round(page[3], 3), "thumbnails_48_s": round(sum(thumbs), 3),
                                     "thumbnails_48_cpu_s": round(cpu_seconds(server.pid) - used, 2),
                                     "whole_page_s": round(sum(page) + sum(thumbs), 3)}
            timings = {}
            for name, query in FILTERS.items():
                used = cpu_seconds(server.pid)
                times = [get(port, f"/api/clips?offset=0&limit=48&{query}")[0] for _ in range(args.repeats)]
                spent = (cpu_seconds(server.pid) - used) / args.repeats
                matched = json.loads(get(port, f"/api/clips?limit=1&{query}")[1])["matched"]
                timings[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                                 "cpu_s": round(spent, 3), "matched": matched}
            results["filters"] = timings
            times = [get(port, "/api/neighbours/clip_05000?f=qa_seam:>:1&sort=qa_seam")[0] for _ in range(args.repeats)]
            results["neighbours_s"] = round(statistics.median(times), 3)
            times = [get(port, f"/api/clips/clip_0{i:04d}/verdict", "POST", b'{"verdict": "accepted"}')[0]
                     for i in range(args.repeats)]
            results["verdict_write_s"] = {"median": round(statistics.median(times), 3), "max": round(max(times), 3)}

            for i in range(100):  # clips committed while the server runs
                folder = out / "clips" / f"zz_new_{i:03d}"
                folder.mkdir()
                (folder / "meta.json").write_text(json.dumps({"clip_id": folder.name, "status": "ok"}))
            start = time.perf_counter()
            while json.loads(get(port, "/api/status")[1])["counts"]["clips"] < args.clips + results["failures"] + 100:
                time.sleep(0.05)
            results["new_clips_listed_s"] = round(time.perf_counter() - start, 3)
            results["browser_first_page_s"] = browser_first_page(port)
            if results["browser_first_page_s"] is not None:
                results["browser_first_page_s"] = round(results["browser_first_page_s"], 3)
            results["server_memory"] = {k: round(v) for k, v in memory(server.pid).items()}
        finally:
            server.terminate()
            server.wait(30)
    results["load_average_after"] = os.getloadavg()
    _common.write_json(args.out, results)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
