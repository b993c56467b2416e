"""The review app in headless Chromium, driven as a reviewer would, then the requeue run it asks for.

One tiny run (3 demo clips, the classic inpainter) serves the whole scenario: open the grid, filter it,
open a clip, check that its video plays, reject it with the keyboard, requeue the next one with a new
click on frame 0 (SAM2, tiny and random, answers in the server), run ``review.requeue=true`` and check
that exactly that clip was redone. Set VP_RAY_SCREENSHOT_DIR to keep the browser's screenshots (the
README's picture is made this way).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pandas as pd
import pytest
from conftest import compose_config
from support import wait_for
from test_review import serving

from vp_ray.review import store
from vp_ray.runtime import graph

pytestmark = pytest.mark.slow
RUN = ["dataset.demo_num_clips=3", "dataset.demo_num_frames=9", "model.height=120", "model.width=180",
       "dilate_size=4", "sam2=tiny_random"]


def browser(tmp_path):
    """Debian's Chromium through Debian's chromedriver and selenium; skipped where one is missing
    (a failure when VP_RAY_REQUIRE_BROWSER is set, as on CI)."""
    missing = [name for name in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not os.access(name, os.X_OK)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install 'vp-ray[test]')")
    if missing:
        message = f"missing for the browser test: {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("VP_RAY_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1300", "--mute-audio",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.fixture(scope="module")
def demo_run(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    overrides = [f"output_dir={tmp / 'out'}", f"dataset.path={tmp / 'demo'}", *RUN]
    result = graph.run(compose_config(overrides))
    assert result.ledger.done_count == 3, result.ledger.table("failed")
    return tmp / "out", overrides


@pytest.fixture(scope="module")
def port(demo_run):
    """The review app on the run, with the run's settings (SAM2 loads once, on the first click)."""
    out, overrides = demo_run
    with serving(out, overrides=overrides) as port:
        yield port


def test_review_in_a_browser_then_requeue_exactly_the_clip_it_fixed(demo_run, port, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    out, overrides = demo_run
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("clips/*/meta.json")}
    shots = tmp_path / "shots"
    shots.mkdir()
    start = time.monotonic()
    driver = browser(tmp_path)
    try:
        def body(key):
            return driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{key}")

        # Read in one script: the page redraws its cards whenever the folder changes.
        def cards():
            return driver.execute_script("return [...document.querySelectorAll('.card')].map(c => c.dataset.clipId)")

        def card_text(clip_id):
            return driver.execute_script(f"const c = document.querySelector('.card[data-clip-id=\"{clip_id}\"]');"
                                         "return c ? c.textContent : ''")

        def current():
            return driver.execute_script("return document.getElementById('video').currentTime")

        # 1. The grid: every clip.
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for("the grid's 3 clips", lambda: len(cards()) == 3)
        assert cards() == ["demo00_landscape", "demo01_portrait", "demo02_odd_size"]

        # 2. Filter: sources wider than 400 px (the portrait clip is 360 wide).
        Select(driver.find_element(By.ID, "f-column")).select_by_value("source_width")
        Select(driver.find_element(By.ID, "f-op")).select_by_value(">")
        driver.find_element(By.ID, "f-value").send_keys("400")
        driver.find_element(By.ID, "f-add").click()
        wait_for("the filtered grid", lambda: body("matched") == "2" and len(cards()) == 2)
        assert cards() == ["demo00_landscape", "demo02_odd_size"]

        # 3. Open a clip; 4. its video plays (original, result and mask are drawn from it).
        driver.execute_script("document.querySelector('.card[data-clip-id=\"demo00_landscape\"]').click()")
        wait_for("the clip page", lambda: body("view") == "clip" and body("clip") == "demo00_landscape")
        wait_for("the video's first frame",
                 lambda: driver.execute_script("return document.getElementById('video').readyState >= 2"))
        driver.find_element(By.ID, "play").click()
        wait_for("the video's currentTime to advance", lambda: current() > 0.1)
        assert driver.execute_script("return document.getElementById('video').error") is None
        assert "frame" in driver.find_element(By.ID, "frame-no").text

        # 5. Reject it with the keyboard: the verdict is written and the next clip opens.
        ActionChains(driver).send_keys("r").perform()
        wait_for("the next clip after the verdict", lambda: body("clip") == "demo02_odd_size")
        assert store.ReviewStore(out).read()["demo00_landscape"]["verdict"] == "rejected"

        # 6. Requeue this one with a new click on frame 0 and a new seed.
        frame0 = driver.find_element(By.ID, "c-frame0")
        wait_for("frame 0 in the editor and the video's first frame (the page's layout settled)",
                 lambda: driver.execute_script("return document.getElementById('c-frame0').width === 180 && "
                                               "document.getElementById('video').readyState >= 2"))
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", frame0)  # all of it in view
        ActionChains(driver).move_to_element_with_offset(frame0, -frame0.size["width"] // 4, 0).click().perform()
        wait_for("SAM2's mask on frame 0", lambda: frame0.get_attribute("data-preview") == "ready")
        assert "SAM2 mask on frame 0" in driver.find_element(By.ID, "edit-state").text
        driver.find_element(By.ID, "e-seed").send_keys("7")
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(shots / "review_clip.png"))
        driver.find_element(By.ID, "requeue").click()
        wait_for("the requeue", lambda: body("last-requeue") == "demo02_odd_size")
        edited = store.ReviewStore(out).read()["demo02_odd_size"]
        assert edited["requeue"] == "pending" and edited["seed"] == 7 and edited["frame_width"] == 180
        (click_x, click_y, label), = json.loads(edited["points"])
        assert label == 1 and 35 < click_x < 55 and 50 < click_y < 70  # a quarter left of the centre
        browser_s = time.monotonic() - start

        # 7. The requeue run redoes exactly that clip, with its edits.
        result = graph.run(compose_config([*overrides, "review.requeue=true"]))
        done = result.ledger.table("done")
        assert done[done.status != "done_before"][["clip_id", "status"]].values.tolist() == \
            [["demo02_odd_size", "ok"]] and not result.ledger.failed_count
        after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("clips/*/meta.json")}
        assert {k for k in before if after[k] != before[k]} == {"demo02_odd_size"}
        meta = json.loads((out / "clips/demo02_odd_size/meta.json").read_text())
        assert meta["mask_kind"] == "points" and meta["effective_seed"] == 7 and meta["time_segment_s"] > 0
        manifest = pd.read_parquet(out / "manifest.parquet").set_index("clip_id")
        assert manifest.loc["demo02_odd_size", "status"] == "ok"
        assert manifest.loc["demo00_landscape", "status"] == "done_before"
        assert manifest.loc["demo00_landscape", "review_verdict"] == "rejected"
        assert tuple(manifest.loc["demo02_odd_size", ["review_verdict", "review_requeue"]]) == ("requeued", "done")
        assert store.ReviewStore(out).read()["demo02_odd_size"]["redone_at"]

        # The open page learns of the new result by itself; so does the grid.
        wait_for("the redone badge", lambda: "redone" in driver.find_element(By.ID, "clip-badges").text)
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        wait_for("the grid again", lambda: body("view") == "grid")
        driver.find_element(By.CSS_SELECTOR, '#quick button[data-f=""]').click()  # every clip
        wait_for("the whole grid", lambda: len(cards()) == 3)
        assert "rejected" in card_text("demo00_landscape") and "reviewed" in card_text("demo00_landscape")
        wait_for("the redone clip in the grid", lambda: "redone" in card_text("demo02_odd_size"))
        driver.save_screenshot(str(shots / "review_grid.png"))
    finally:
        driver.quit()
    print(f"browser scenario {browser_s:.1f} s (Chromium's start included), "
          f"whole test {time.monotonic() - start:.1f} s")
    if os.environ.get("VP_RAY_SCREENSHOT_DIR"):
        for shot in shots.iterdir():
            shutil.copy(shot, os.environ["VP_RAY_SCREENSHOT_DIR"])


def test_a_tracked_preview_runs_the_mask_only_path_in_the_server(demo_run, port):
    """On request, the edited click tracked over the clip by the batch job's read, prepare and segment
    stages, as a video the clip page plays; nothing of the clip's own files changes."""
    from test_review import call

    from vp_ray.clip.video import read_video

    out, _ = demo_run
    before = {p: p.stat().st_mtime_ns for p in out.glob("clips/demo01_portrait/*")}
    edits = {"points": [[90, 60, 1]], "dilate_size": 2, "max_seconds": 0.5}
    status, _, payload = call(port, "POST", "/api/clips/demo01_portrait/track", {"edits": edits})
    assert status == 422 and "at least 9 are needed" in json.loads(payload)["detail"]  # as the run would say
    status, _, payload = call(port, "POST", "/api/clips/demo01_portrait/track", {"edits": {**edits, "max_seconds": 1}})
    assert status == 200, payload
    answer = json.loads(payload)
    assert answer["frames"] == 9 and answer["url"].startswith("/files/review/previews/demo01_portrait.mp4?v=")
    status, _, video = call(port, "GET", answer["url"])
    assert status == 200 and video[4:8] == b"ftyp"
    frames, _ = read_video(out / "review" / "previews" / "demo01_portrait.mp4")
    assert frames.shape == (9, 120, 180, 3)  # 1 s at 8 fps, at the model's size
    assert {p: p.stat().st_mtime_ns for p in out.glob("clips/demo01_portrait/*")} == before
    work = out / "review" / "previews" / ".work"
    assert not work.exists() or not any(work.iterdir())  # the preview's work files are gone
