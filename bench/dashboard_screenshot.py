"""Screenshot the Ray dashboard's job page of a vp-ray run under way (docs/dashboard_job.png).

    python bench/dashboard_screenshot.py PNG_PATH [--clips 6] [--width 1400] [--height 2300] [--max-kb 400]

Machine: CPUs only; Debian's Chromium and chromedriver (`apt-get install chromium chromium-driver`),
selenium (the test extras); about 2 min on 2 cores.

As README's multi-node recipe, on this machine: a head of its own (`ray start --head`, a temp folder
under /tmp, free ports, token authentication), then `ray job submit` of a demo run (`model=sim`,
whose gate lets 2 clips through the model and holds the others, so the page shows a run under way
whatever the machine's speed). The browser opens the job's page, types the token into the
dashboard's dialog as a user does, opens "Ray Data Overview" and the dataset's row in it, and waits
until the driver's log shows the status line; then the screenshot, and the run is let go to its end
before the head stops.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common
from report_screenshot import shrink_png

GUARD_S = 600  # a guard against a hang, never a pace: every wait is for a state
RAY = str(Path(sys.executable).parent / "ray")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for(what: str, check):
    deadline = time.monotonic() + GUARD_S
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            _common.refuse(f"gave up waiting for {what}")
        time.sleep(0.5)


def browser(width: int, height: int, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}",
                 "--hide-scrollbars", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("png", type=Path)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2300)
    parser.add_argument("--max-kb", type=int, default=400)
    args = parser.parse_args()
    missing = [name for name in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not os.access(name, os.X_OK)]
    if missing:
        _common.refuse(f"needs {', '.join(missing)} (apt-get install chromium chromium-driver)")
    _common.require_modules("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from vp_ray.models import gate

    work = Path(tempfile.mkdtemp(prefix="vp-dashboard-"))
    temp = Path("/tmp") / f"vp-shot-{os.getpid()}"  # Ray's socket paths must stay short
    gcs, port, *others = free_ports(9)
    names = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port", "--node-manager-port", "--object-manager-port", "--ray-client-server-port"]
    token = secrets.token_hex(32)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    for name in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        env.pop(name, None)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={port}", "--dashboard-host=127.0.0.1",
         "--include-dashboard=true", "--num-cpus=4", "--num-gpus=0", f"--temp-dir={temp}", "--disable-usage-stats",
         *[arg for name, free in zip(names, others) for arg in (name, str(free))]],
        stdout=open(work / "head.log", "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    api, driver, job = f"http://127.0.0.1:{port}", None, None
    headers = {"Authorization": f"Bearer {token}"}

    def get(path: str):
        try:
            return json.loads(urllib.request.urlopen(urllib.request.Request(api + path, headers=headers),
                                                     timeout=30).read())
        except OSError:
            return None

    try:
        wait_for("the head's dashboard", lambda: get("/api/version"))
        out, gate_dir = work / "out", work / "gate"
        excludes = {"excludes": ["ckpt/", "data/", "outputs/", ".venv/", "build/", ".site/", "logs/", "bench/runs/"]}
        job = subprocess.Popen(
            [RAY, "job", "submit", "--address", api, "--submission-id", f"vp-ray-demo-{os.getpid()}",
             "--metadata-json", json.dumps({"job_name": f"vp-ray demo -> {out}"}),
             "--working-dir", ".", "--runtime-env-json", json.dumps(excludes), "--",
             "python", "launch.py", "dataset=demo", f"dataset.path={work / 'demo'}",
             f"dataset.demo_num_clips={args.clips}", "model=sim", "model.num_gpus=0", "model.seconds_per_frame=0.05",
             "model.hold_after_clips=2", f"model.gate_dir={gate_dir}", "cluster.status_every_s=5",
             f"output_dir={out}", f"hydra.run.dir={work / 'logs'}"],
            cwd=_common.REPO, env=env, stdout=open(work / "submit.log", "w"), stderr=subprocess.STDOUT)
        wait_for("2 clips written and the next held in the model",
                 lambda: gate.held(gate_dir) and len(list(out.glob("clips/*/meta.json"))) == 2)
        job_id = wait_for("the job's id", lambda: next((j["job_id"] for j in get("/api/jobs/") or []
                                                         if j.get("job_id") and j.get("submission_id")), None))
        driver = browser(args.width, args.height, str(work / "profile"))
        driver.get(f"{api}/#/jobs/{job_id}")
        # The token, typed into the dashboard's dialog as a user does.
        field = wait_for("the token dialog", lambda: driver.find_elements(By.XPATH, "//input[@type='password']"))
        field[0].send_keys(token + Keys.ENTER)
        wait_for("the dialog to close", lambda: not driver.find_elements(By.XPATH, "//input[@type='password']"))
        overview = wait_for("the Ray Data Overview section",
                            lambda: driver.find_elements(By.XPATH, "//*[text()='Ray Data Overview']"))
        overview[0].click()
        expand = wait_for("the dataset's row", lambda: driver.find_elements(  # react-icons: <svg><title>
            By.XPATH, "//*[local-name()='title' and starts-with(text(), 'Expand Dataset vp-ray')]/.."))
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", expand[0])
        wait_for("the stages' operators", lambda: "MapBatches(inpaint)" in driver.page_source)
        wait_for("the driver's log", lambda: "in or waiting for" in driver.page_source)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.png))
        shrink_png(args.png, args.max_kb)
        print(f"{args.png} ({args.png.stat().st_size // 1024} KiB); job {job_id}")
    finally:
        if driver is not None:
            driver.quit()
        gate.open_gate(work / "gate")
        if job is not None:
            job.wait(timeout=GUARD_S)
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        for entry in Path("/proc").iterdir():  # the head's processes that left its process group
            try:
                if entry.name.isdigit() and str(temp).encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
