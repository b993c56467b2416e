"""The Ray dashboard as a user sees it: vp-ray's Grafana dashboard, names a user recognises, no false alarms.

One demo run serves every check that needs Ray: a head started with `ray start` (its dashboard on,
token authentication as the README's recipe has it), a Prometheus started the way Ray's docs say
(Ray's own prometheus.yml, whose targets come from Ray's service discovery file), and `python
launch.py` joining the head (RAY_ADDRESS) with 4 good clips and 1 whose video is missing (a clip
failure vp-ray handles: Ray sees nothing fail). The model passes 2 clips and holds the others at a
gate, so the run is looked at mid-way in a known state, then let go. The same head then takes the
README's multi-node recipe: `ray job submit ... -- python launch.py cluster=multinode ...`.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from conftest import PROGRAMS, REPO
from support import free_ports, wait_for

from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.models import gate
from vp_ray.runtime import grafana

RAY = str(Path(sys.executable).parent / "ray")
STAGE_OPERATORS = {"MapBatches(read)", "MapBatches(prepare)", "MapBatches(inpaint)", "MapBatches(write)"}
# What the user saw on the console: Ray's core worker's error level (E/F), Python's ERROR.
ERROR_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,.]+ [EF] \d+ \d+\]|\bERROR\b|\bCRITICAL\b|^Traceback")


def load_dashboard() -> dict:
    return json.loads(grafana.DASHBOARD.read_text())


def exported_names(monkeypatch) -> set[str]:
    """The Prometheus names of the metrics ``RunMetrics`` records (Ray prefixes ``ray_``; a counter
    gets ``_total``, a histogram ``_bucket``/``_sum``/``_count``)."""
    import ray.util.metrics

    from vp_ray.runtime import telemetry

    names = set()

    def metric(suffixes):
        class Fake:
            def __init__(self, name, **kwargs):
                names.update(f"ray_{name}{suffix}" for suffix in suffixes)
        return Fake

    monkeypatch.setattr(ray.util.metrics, "Counter", metric(["_total"]))
    monkeypatch.setattr(ray.util.metrics, "Gauge", metric([""]))
    monkeypatch.setattr(ray.util.metrics, "Histogram", metric(["_bucket", "_sum", "_count"]))
    telemetry.RunMetrics("classic")
    return names


def test_the_grafana_dashboard_holds_a_panel_per_question_on_the_metrics_we_export(monkeypatch):
    dashboard = load_dashboard()
    assert dashboard["uid"] == "vp-ray" and dashboard["title"] == "vp-ray"
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "SessionName" in variables["SessionName"]["query"]["query"]
    titles = [panel["title"] for panel in dashboard["panels"]]
    for words in (["per hour", "outcome"], ["waiting", "stage"], ["Seconds", "stage", "p50", "p95"],
                  ["Denoising step"], ["Frames per second", "actor"], ["GPU memory", "actor"],
                  ["Failed", "error kind"]):
        assert any(all(word in title for word in words) for title in titles), (words, titles)
    exported, used, cells = exported_names(monkeypatch), set(), set()
    for panel in dashboard["panels"]:
        assert panel["type"] in ("timeseries", "bargauge") and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24 and box["h"] > 0
        area = {(box["x"] + dx, box["y"] + dy) for dx in range(box["w"]) for dy in range(box["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]) > 0
        for target in panel["targets"]:
            expr = target["expr"]
            assert target["datasource"] == panel["datasource"] and target["legendFormat"]
            assert 'SessionName=~"$SessionName"' in expr
            for variable in re.findall(r"\$(\w+)", expr):
                assert variable in variables or variable in ("__rate_interval", "__range"), variable
            names = set(re.findall(r"\bray_vp_ray_\w+", expr))
            assert names and names <= exported, (expr, exported)
            used |= {name.removesuffix("_bucket").removesuffix("_total") for name in names}
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    # Every metric vp-ray exports is on some panel.
    assert used == {name.removesuffix("_bucket").removesuffix("_total") for name in exported
                    if not name.endswith(("_sum", "_count"))}


@pytest.mark.parametrize("crash", [False, True])
def test_the_console_drops_rays_known_line_and_passes_every_other_one(crash):
    done = subprocess.run([sys.executable, str(PROGRAMS / "console_filter.py"), *(["crash"] if crash else [])],
                          cwd=REPO, check=False, capture_output=True, text=True, timeout=120)
    assert "constructor arguments" not in done.stderr
    assert "a real error" in done.stderr and "python's own line" in done.stderr
    if crash:  # what a driver writes as it dies still reaches the console
        assert done.returncode == -signal.SIGKILL and "last words" in done.stderr
    else:
        assert done.returncode == 0 and done.stderr.endswith("after the block\n")


# ---------------------------------------------------------------------------------------------
# One demo run through a head of our own.


def kill_processes_under(folder: Path) -> None:
    """SIGKILL the processes whose command line names ``folder`` (only this test's head uses it)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(folder).encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


HEAD_START_TRIES = 3
HEAD_STARTED = "Ray runtime started."  # what `ray start` prints once its node is up


def start_head(command: list[str], env: dict, log: Path, temp: Path) -> subprocess.Popen:
    """`ray start --head --block`, started again where Ray's fixed 30 s wait for its raylet ran out
    (on a busy machine: "The current node timed out during startup"), as `graph.start_local` does
    for a local instance; the failed try's processes are killed first."""
    for _ in range(HEAD_START_TRIES):
        begins = log.stat().st_size if log.exists() else 0  # this try's part of the log
        with open(log, "a") as out:  # unbuffered: the line must reach the file while the head runs on
            head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**env, "PYTHONUNBUFFERED": "1"})

        def decided(head=head, begins=begins):
            return head.poll() is not None or HEAD_STARTED.encode() in log.read_bytes()[begins:]

        wait_for("`ray start` to start its node or give up", decided)
        if head.poll() is None:
            return head
        kill_processes_under(temp)
        shutil.rmtree(temp, ignore_errors=True)
    raise AssertionError(f"`ray start --head` failed {HEAD_START_TRIES} times:\n{log.read_text()[-3000:]}")


def test_a_head_whose_start_timed_out_is_started_again(tmp_path):
    """A stand-in for `ray start --head --block`: its first try gives up as Ray does on a busy
    machine, the second starts and blocks."""
    fake = ("import pathlib, sys, time\n"
            "tries = pathlib.Path(sys.argv[1])\n"
            "tries.write_text(tries.read_text() + 'x' if tries.exists() else 'x')\n"
            "if len(tries.read_text()) == 1:\n"
            "    sys.exit('Exception: The current node timed out during startup.')\n"
            f"print({HEAD_STARTED!r})\n"
            "time.sleep(600)\n")
    temp = tmp_path / "temp"
    head = start_head([sys.executable, "-c", fake, str(tmp_path / "tries")], dict(os.environ),
                      tmp_path / "head.log", temp)
    try:
        assert head.poll() is None and (tmp_path / "tries").read_text() == "xx"
        assert "timed out during startup" in (tmp_path / "head.log").read_text()
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()


def prometheus_binary() -> str | None:
    found = shutil.which("prometheus")
    if found is None and os.environ.get("VP_RAY_REQUIRE_PROMETHEUS"):
        pytest.fail("VP_RAY_REQUIRE_PROMETHEUS is set but there is no prometheus on PATH (apt-get install prometheus)")
    return found


def start_prometheus(binary: str, session: Path, folder: Path) -> tuple[subprocess.Popen, str]:
    """Prometheus on Ray's own config (README, Monitoring), scraping every second instead of 10 s."""
    config = yaml.safe_load(wait_for("Ray's prometheus.yml", lambda: (session / "metrics/prometheus/prometheus.yml")
                                     .is_file() and (session / "metrics/prometheus/prometheus.yml").read_text()))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,) = free_ports(1)
    process = subprocess.Popen([binary, f"--config.file={folder / 'prometheus.yml'}",
                                f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=open(folder / "prometheus.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for("Prometheus", lambda: http_ok(f"{url}/-/ready"))
    return process, url


def http_ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=5).status == 200
    except OSError:
        return False


def demo_dataset(folder: Path) -> Path:
    csv = ensure_demo_dataset(folder / "demo", num_clips=4, num_frames=12)
    rows = pd.read_csv(csv)
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(folder / "demo" / path) for path in rows[column]]
    missing = {**rows.iloc[0].to_dict(), "clip_id": "gone", "video_path": str(folder / "nope.mp4")}
    pd.concat([rows, pd.DataFrame([missing])]).to_csv(folder / "clips.csv", index=False)
    return folder / "clips.csv"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    gcs, dashboard_port, *others = free_ports(9)
    names = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port", "--node-manager-port", "--object-manager-port", "--ray-client-server-port"]
    metrics_port = others[names.index("--metrics-export-port")]  # the endpoint Prometheus scrapes
    temp = Path("/tmp") / f"vp-dash-{os.getpid()}"  # Ray's socket paths must stay short
    token = secrets.token_hex(32)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    for name in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        env.pop(name, None)
    head = start_head(
        [RAY, "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dashboard_port}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=4", "--num-gpus=0",
         f"--temp-dir={temp}", "--disable-usage-stats", '--system-config={"metrics_report_interval_ms": 500}',
         *[arg for name, port in zip(names, others) for arg in (name, str(port))]], env, tmp / "head.log", temp)
    processes = [head]
    try:
        api = f"http://127.0.0.1:{dashboard_port}"
        headers = {"Authorization": f"Bearer {token}"}

        def get(path: str):
            request = urllib.request.Request(api + path, headers=headers)
            return json.loads(urllib.request.urlopen(request, timeout=30).read())

        def answers():
            try:
                return get("/api/version")
            except OSError:
                return None

        wait_for("the head's dashboard", answers)
        session = (temp / "session_latest").resolve()
        binary = prometheus_binary()
        prometheus, prometheus_url = start_prometheus(binary, session, tmp) if binary else (None, None)
        processes += [prometheus] if prometheus else []

        out, gate_dir = tmp / "out", tmp / "gate"
        start = time.time()
        # A plain `python launch.py` on a machine where a cluster runs (RAY_ADDRESS names it) joins
        # it, even with sizing settings that only a local instance takes (Ray refuses them when joining).
        driver = subprocess.Popen(
            [sys.executable, "launch.py", "dataset=csv", "cluster.num_cpus=2",
             f"dataset.path={demo_dataset(tmp)}", "model=sim", "model.num_gpus=0", "model.seconds_per_frame=0.02",
             "model.num_inference_steps=4", "model.hold_after_clips=2", f"model.gate_dir={gate_dir}",
             "cluster.sample_every_s=0.5", f"output_dir={out}", f"hydra.run.dir={tmp / 'logs'}"],
            cwd=REPO, env={**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}"}, stdout=open(tmp / "stdout", "w"),
            stderr=open(tmp / "stderr", "w"))
        processes.append(driver)
        # Mid-way: 2 clips through the model, the next one held in it, the job running.
        wait_for("2 clips committed and one held", lambda: gate.held(gate_dir)
                 and len(list(out.glob("clips/*/meta.json"))) == 2 or driver.poll() is not None)
        assert driver.poll() is None, (tmp / "stderr").read_text()[-3000:]
        midway = SimpleNamespace(failed_tasks=get(FAILED_TASKS), actors=get(ACTORS), jobs=get("/api/jobs/"))
        if prometheus_url:
            # A rate needs two samples apart: Prometheus must hold the mid-way counts before the rest
            # of the clips add to them (on a loaded machine it once first saw the final counts).
            wait_for("Prometheus holding the mid-way counts", lambda: all(
                prometheus_query(prometheus_url, f'{name}{{SessionName="{session.name}"}}') for name in RATED),
                proc=driver)
        gate.open_gate(gate_dir)
        assert driver.wait(timeout=600) == 0, (tmp / "stderr").read_text()[-3000:]
        yield SimpleNamespace(get=get, out=out, tmp=tmp, session=session, midway=midway, start=start,
                              api=api, env=env, gcs_port=gcs,
                              prometheus=prometheus_url, metrics=f"http://127.0.0.1:{metrics_port}/metrics",
                              stdout=(tmp / "stdout").read_text(),
                              stderr=(tmp / "stderr").read_text())
    finally:
        for process in reversed(processes):
            if process is head:
                os.killpg(head.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait(timeout=60)
        kill_processes_under(temp)  # the head's processes that left its process group
        shutil.rmtree(temp, ignore_errors=True)


def prometheus_query(url: str, query: str, kind: str = "query", **params) -> list[dict]:
    """The series a query of Prometheus returns (``kind``: ``query``, an instant, or ``query_range``)."""
    path = f"/api/v1/{kind}?" + urllib.parse.urlencode({"query": query, **params})
    answer = json.loads(urllib.request.urlopen(url + path, timeout=30).read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


# The metrics whose rate a panel shows.
RATED = sorted({name for panel in load_dashboard()["panels"] for target in panel["targets"]
                for name in re.findall(r"rate\((\w+)\{", target["expr"])})
FAILED_TASKS = "/api/v0/tasks?detail=1&limit=10000&filter_keys=state&filter_predicates=%3D&filter_values=FAILED"
ACTORS = "/api/v0/actors?detail=1&limit=10000"


def state_list(answer) -> list[dict]:
    return answer["data"]["result"]["result"]


def grafana_to_prometheus(expr: str, session: str, range_s: int) -> str:
    """A panel's query as Grafana sends it for the run's session (1 s scrapes: Grafana's rate window
    would be 4 s; 30 s keeps two samples in it where a loaded machine delays scrapes)."""
    return (expr.replace("$SessionName", session).replace("$__rate_interval", "30s")
            .replace("$__range", f"{range_s}s"))


def panel_data(url: str, target: dict, session: str, start: float) -> list[float]:
    """The finite values the target's query returns over the run (an instant query: now)."""
    now = time.time()
    query = grafana_to_prometheus(target["expr"], session, int(now - start) + 60)
    if target.get("instant"):
        result = prometheus_query(url, query, time=now)
    else:
        result = prometheus_query(url, query, "query_range", start=start - 30, end=now, step=1)
    values = []
    for series in result:
        samples = series.get("values") or [series["value"]]
        values += [float(value) for _, value in samples if math.isfinite(float(value))]
    return values


@pytest.mark.slow
def test_every_panel_of_the_grafana_dashboard_has_data_for_a_demo_run(demo_run):
    if demo_run.prometheus is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; VP_RAY_REQUIRE_PROMETHEUS=1 fails instead)")
    targets = [(panel["title"], target) for panel in load_dashboard()["panels"] for target in panel["targets"]]

    def empty():
        return [(title, target["expr"]) for title, target in targets
                if not panel_data(demo_run.prometheus, target, demo_run.session.name, demo_run.start)]

    # Prometheus scrapes every second: wait until it has what the run exported.
    deadline = time.monotonic() + 300
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, f"panels without data: {missing}"
    failed = panel_data(demo_run.prometheus, targets[[t for t, _ in targets].index("Failed clips, by error kind")][1],
                        demo_run.session.name, demo_run.start)
    assert failed == [1.0]  # the clip whose video is missing


def metric(lines: list[str], name: str, **tags) -> float | None:
    """The value of the samples of ``name`` whose tags include ``tags`` (summed over the others);
    None where there is none."""
    values = []
    for line in lines:
        match = re.match(r"(\w+)\{(.*)\} (\S+)$", line)
        if match and match.group(1) == name:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            if all(labels.get(key) == value for key, value in tags.items()):
                values.append(float(match.group(3)))
    return sum(values) if values else None


@pytest.mark.slow
def test_the_runs_metrics_are_on_the_heads_prometheus_endpoint(demo_run):
    """What Prometheus scrapes (README, Monitoring): the head node's metrics endpoint, which Ray's
    agents fill every 0.5 s here; read until the finished run's counters have all arrived."""
    expected = {("ray_vp_ray_clips_total", (("outcome", "ok"), ("model", "sim"))): 4,
                ("ray_vp_ray_clips_total", (("outcome", "failed"), ("stage", "prepare"))): 1,
                ("ray_vp_ray_stage_seconds_count", (("stage", "inpaint"),)): 4,
                ("ray_vp_ray_stage_seconds_count", (("stage", "write"),)): 4}

    def samples():
        text = urllib.request.urlopen(demo_run.metrics, timeout=30).read().decode()
        return [line for line in text.splitlines() if "vp_ray" in line and not line.startswith("#")]

    def found(lines):
        return {key: metric(lines, key[0], **dict(key[1])) for key in expected}

    deadline = time.monotonic() + 120  # the counters come; the deadline turns a lost one into a failure
    while found(lines := samples()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found(lines) == expected, lines
    assert metric(lines, "ray_vp_ray_inpaint_frames_per_second", model="sim") > 0  # the last clip's speed
    assert metric(lines, "ray_vp_ray_clips_waiting", stage="inpaint") is not None


@pytest.mark.slow
def test_a_run_where_no_clip_crashed_shows_no_failed_task_no_dead_actor_and_no_error_line(demo_run):
    # Mid-way and at the end: no task failed, and no actor died (at the end the inpainting pool's
    # actor is dead because the pool let it go: "all references to the actor were removed").
    assert state_list(demo_run.midway.failed_tasks) == []
    assert [a["class_name"] for a in state_list(demo_run.midway.actors) if a["state"] == "DEAD"] == []
    assert state_list(demo_run.get(FAILED_TASKS)) == []
    for actor in state_list(demo_run.get(ACTORS)):
        if actor["state"] == "DEAD":
            reason = actor["death_cause"]["actor_died_error_context"]
            assert actor["class_name"] == "MapWorker(MapBatches(inpaint))", actor
            assert "all references to the actor were removed" in reason["error_message"], reason
    # The console and the run's log: no error-level line. Ray's core worker did log its line about
    # Ray Data's constructor arguments: in Ray's log of the driver, not on the console.
    launch_log = (demo_run.tmp / "logs" / "launch.log").read_text()
    for text in (demo_run.stdout, demo_run.stderr, launch_log):
        assert [line for line in text.splitlines() if ERROR_LINE.search(line)] == []
    driver_logs = "".join(path.read_text() for path in demo_run.session.glob("logs/python-core-driver-*.log"))
    assert "has constructor arguments in the object store" in driver_logs


@pytest.mark.slow
def test_the_dashboard_names_the_run_its_dataset_and_its_stages(demo_run):
    out = demo_run.out
    (job,) = [job for job in demo_run.get("/api/jobs/") if job["metadata"].get("job_name") == f"vp-ray csv -> {out}"]
    assert job["metadata"]["model"] == "sim" and job["metadata"]["clips_to_run"] == "5"
    assert "launch.py" in job["entrypoint"] and job["status"] == "SUCCEEDED"
    running = [j for j in demo_run.midway.jobs if j["job_id"] == job["job_id"]]
    assert running[0]["status"] == "RUNNING"
    (dataset,) = demo_run.get(f"/api/data/datasets/{job['job_id']}")["datasets"]
    assert dataset["dataset"].startswith(f"vp-ray csv -> {out.name}_")
    operators = {operator["name"] for operator in dataset["operators"]}
    assert operators >= STAGE_OPERATORS and any(name.startswith("ReadShards") for name in operators), operators
    # The Grafana dashboard is where the head's Grafana provisioning reads Ray's own.
    installed = demo_run.session / "metrics/grafana/dashboards" / grafana.INSTALLED_NAME
    assert json.loads(installed.read_text())["uid"] == "vp-ray"
    assert (demo_run.session / "metrics/grafana/dashboards/default_grafana_dashboard.json").exists()


def submit(address: str, env: dict, args: list[str]) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent is still starting (the deadline only
    turns a head that never starts into a failure)."""
    deadline = time.monotonic() + 600
    while True:
        done = subprocess.run([RAY, "job", "submit", "--address", address, *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        if "No available agent" not in done.stdout + done.stderr and "Connection refused" not in done.stderr \
                or time.monotonic() > deadline:
            return done
        time.sleep(3)


@pytest.mark.slow
def test_the_demo_run_joined_the_head_that_ray_address_names(demo_run):
    assert re.search(rf"connecting to the Ray cluster running at \S+:{demo_run.gcs_port} ", demo_run.stdout), \
        demo_run.stdout[-3000:]


@pytest.mark.slow
def test_ray_job_submit_runs_launch_py_on_the_head_and_another_token_is_refused(demo_run, tmp_path):
    """The README's multi-node recipe on one machine: `ray start --head` (above), then `ray job submit
    ... -- python launch.py cluster=multinode ...` runs to completion, token authentication included.
    Last in this file: its job's actors and tasks come after the demo run's checks."""
    excludes = {"excludes": ["ckpt/", "data/", "outputs/", ".venv/", "build/", ".site/", "logs/"]}
    done = submit(demo_run.api, demo_run.env, [
        "--working-dir", ".", "--runtime-env-json", json.dumps(excludes), "--",
        "python", "launch.py", "cluster=multinode", "dataset=demo", f"dataset.path={tmp_path / 'demo'}",
        "dataset.demo_num_clips=2", "dataset.demo_num_frames=9", "model.height=64", "model.width=96",
        "dilate_size=2", f"output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'logs'}"])
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "Token authentication is disabled" not in (demo_run.tmp / "head.log").read_text()
    refused = subprocess.run([RAY, "job", "list", "--address", demo_run.api], cwd=REPO, capture_output=True,
                             text=True, env={**demo_run.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}, timeout=120)
    assert refused.returncode != 0  # another token is turned away
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(manifest) == 2 and set(manifest.status) == {"ok"}
