"""The review app without a browser: review.parquet's writes, the clip table, the edits, and what the
server refuses (paths out of the output folder, tokens, hosts, malformed edits)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import REPO, compose_config

from vp_ray.clip import outputs
from vp_ray.clip.prompts import parse_prompts
from vp_ray.clip.video import placement_for
from vp_ray.review import store
from vp_ray.review.edits import EditError, check_edits, record_fields
from vp_ray.review.index import ClipIndex, Query, QueryError
from vp_ray.runtime.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS

pytest.importorskip("fastapi")


# ----------------------------------------------------------------------------- a hand-made output folder

def make_clip(out: Path, clip_id: str, width: int = 96, height: int = 64, **meta) -> None:
    folder = out / "clips" / clip_id
    folder.mkdir(parents=True)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, :, 1] = 120
    cv2.imwrite(str(folder / "frame0_original.png"), frame)
    (folder / "result.mp4").write_bytes(b"0123456789" * 100)
    (folder / "meta.json").write_text(json.dumps({"clip_id": clip_id, "status": "ok", "source_width": 2 * width,
                                                  "source_height": 2 * height, "files": {}, **meta}))


def make_run(out: Path, rows: list[dict], failures: list[dict] = ()) -> Path:
    base = {c: None for c in MANIFEST_COLUMNS} | {"status": "ok", "prompt": "a street", "degraded": False,
                                                  "num_frames": 9, "out_fps": 8.0}
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        make_clip(out, row["clip_id"])
    pd.DataFrame([base | row for row in rows], columns=MANIFEST_COLUMNS).to_parquet(out / "manifest.parquet")
    pd.DataFrame(list(failures), columns=FAILURE_COLUMNS).to_parquet(out / "failures.parquet")
    os.utime(out / "manifest.parquet")  # newer than the folders, as a run writes it last
    return out


ROWS = [{"clip_id": "a", "qa_seam": 1.1, "num_frames": 49}, {"clip_id": "b", "qa_seam": 2.5, "status": "suspect",
                                                             "degraded": True},
        {"clip_id": "c", "qa_seam": None, "prompt": "a quiet Beach"}]
FAILURE = {"clip_id": "f", "failed_stage": "prepare", "error_type": "decode", "error": "corrupt", "video_path": "v.mp4",
           "warnings": ""}


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "out", ROWS, [FAILURE])


# ----------------------------------------------------------------------------- a server in a thread

@contextmanager
def serving(out: Path, token: str | None = None, overrides: tuple[str, ...] = ("sam2=tiny_random",)):
    """The review app on ``out`` in a thread, on a free port of 127.0.0.1 (``overrides``: the run's settings)."""
    import uvicorn

    from vp_ray.review.__main__ import listen
    from vp_ray.review.app import create_app

    app = create_app(out, compose_config([*overrides, f"output_dir={out}"]), token=token, refresh_s=0)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


def call(port: int, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
    """One request with the path sent exactly as given (no client-side clean-up of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json"} if data is not None else {}
    connection.request(method, path, body=data, headers={**sent, **(headers or {})})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


def detail(payload: bytes) -> str:
    return json.loads(payload)["detail"]


# ----------------------------------------------------------------------------- review.parquet

def test_two_writers_editing_different_clips_lose_nothing(tmp_path):
    """Two stores on one folder (as two processes: the file lock, not the thread lock, orders them),
    each with many threads: every change is in the file."""
    first, second = store.ReviewStore(tmp_path), store.ReviewStore(tmp_path)

    def judge(writer, clip_id):
        writer.update([clip_id], lambda row: {**row, "verdict": store.REJECTED, "note": clip_id})

    threads = [threading.Thread(target=judge, args=(writer, f"{name}{i}"))
               for i in range(12) for name, writer in (("x", first), ("y", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = store.ReviewStore(tmp_path).read()
    assert sorted(rows) == sorted(f"{n}{i}" for i in range(12) for n in "xy")
    assert all(row["verdict"] == "rejected" and row["note"] == clip_id for clip_id, row in rows.items())


def test_a_write_that_dies_midway_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    reviews = store.ReviewStore(tmp_path)
    reviews.update(["a"], lambda row: {**row, "verdict": store.ACCEPTED})
    before = (tmp_path / store.REVIEW_FILE).read_bytes()

    def dies(table, where):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("killed")

    monkeypatch.setattr(pq, "write_table", dies)
    with pytest.raises(OSError):
        reviews.update(["b"], lambda row: {**row, "verdict": store.REJECTED})
    assert (tmp_path / store.REVIEW_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{store.REVIEW_FILE}")] == []


def test_a_killed_server_keeps_every_edit_it_acknowledged(run_dir):
    """The server writes each edit through before it answers: SIGKILL right after the answers loses none."""
    proc = subprocess.Popen([sys.executable, "-m", "vp_ray.review", str(run_dir), "--port", "0", "sam2=tiny_random"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith(f"reviewing {run_dir} (4 clips)"), lines
        url = lines[1].split()[-1]
        assert url.startswith("http://127.0.0.1:") and "token" not in url  # loopback by default, no token
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for clip_id, verdict in (("a", "accepted"), ("b", "rejected"), ("c", "accepted"), ("f", "rejected")):
            status, _, payload = call(port, "POST", f"/api/clips/{clip_id}/verdict", {"verdict": verdict})
            assert status == 200, payload
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    rows = store.ReviewStore(run_dir).read()
    assert {k: v["verdict"] for k, v in rows.items()} == {"a": "accepted", "b": "rejected", "c": "accepted",
                                                          "f": "rejected"}


# ----------------------------------------------------------------------------- the clip table

def test_the_table_sorts_and_filters_by_any_column(run_dir):
    index = ClipIndex(run_dir)
    assert sorted(index.table.clip_id) == ["a", "b", "c", "f"]

    def ids(query):
        return index.select(query).clip_id.tolist()

    assert ids(Query([], sort="qa_seam", descending=True)) == ["b", "a", "c", "f"]  # unmeasured last
    assert ids(Query([("qa_seam", ">", "2")])) == ["b"]
    assert ids(Query([("status", "=", "failed")])) == ["f"]
    assert ids(Query([("degraded", "=", "true")])) == ["b"]
    assert ids(Query([("prompt", "~", "beach")])) == ["c"]
    assert ids(Query([("qa_seam", "empty", "")])) == ["c", "f"]
    assert ids(Query([("status", "!=", "failed"), ("num_frames", "<", "20")])) == ["b", "c"]
    assert ids(Query([], text="QUIET")) == ["c"]
    for bad in ([("nope", "=", "1")], [("qa_seam", ">", "high")], [("qa_seam", "like", "1")]):
        with pytest.raises(QueryError):
            index.select(Query(bad))


def test_clips_committed_while_a_run_goes_on_appear(run_dir):
    index = ClipIndex(run_dir, min_interval_s=0)
    make_clip(run_dir, "new", status="suspect", qa_seam=3.0)
    redone = run_dir / "clips" / "a" / "meta.json"   # a clip redone after the manifest was written
    redone.write_text(json.dumps({**json.loads(redone.read_text()), "status": "suspect", "qa_seam": 9.0}))
    os.utime(redone.parent, ns=(time.time_ns() + 10**9,) * 2)
    assert index.refresh()
    rows = index.table.set_index("clip_id")
    assert rows.loc["new", "status"] == "suspect" and rows.loc["new", "qa_seam"] == 3.0
    assert rows.loc["a", "qa_seam"] == 9.0 and rows.loc["b", "qa_seam"] == 2.5
    assert not index.refresh()  # nothing changed since


# ----------------------------------------------------------------------------- edits

@pytest.mark.parametrize("mode", ["stretch", "pad", "crop"])
def test_a_click_on_frame_0_lands_where_the_run_puts_it(mode):
    """A click stored in frame0_original.png's pixels becomes the record's source pixels, which the run
    maps back onto the same pixel of its frame."""
    cfg = compose_config(["output_dir=/tmp/x", f"resize_mode={mode}", "model.height=64", "model.width=96"])
    row = store.blank("a") | check_edits({"points": [[30.5, 20.0, 1], [80, 40, 0]], "box": [10, 18, 50, 40]}, (96, 64))
    fields = record_fields(row, (300, 100), cfg)  # a 300x100 source: pad leaves bars above and below
    assert fields["mask_kind"] == "points" and fields["mask_path"] == "" and fields["mask_id"] == -1
    points, box = parse_prompts(fields["points"], fields["box"], placement_for(100, 300, 64, 96, mode), "source")
    assert np.allclose(points, [[30.5, 20.0, 1], [80, 40, 0]]) and np.allclose(box, [10, 18, 50, 40])


def test_a_record_without_the_per_clip_dilation_keeps_its_fingerprint():
    """meta.json of clips written before records had dilate_size: their hash is the one they were given."""
    from vp_ray.clip.records import ClipRecord
    from vp_ray.clip.rows import new_row

    row = new_row(ClipRecord(clip_id="a", video_path="/v.mp4"))
    settings = {"seed": 1}
    old = {k: v for k, v in row.items() if k != "dilate_size"}
    assert outputs.fingerprint(settings, old) == outputs.fingerprint(settings, row)
    assert outputs.fingerprint(settings, {**row, "dilate_size": 8}) != outputs.fingerprint(settings, row)


@pytest.mark.parametrize("edits, message", [
    ([1, 2], "JSON object"), ({"colour": "red"}, "unknown edit field"), ({"seed": "7"}, "finite number"),
    ({"seed": -1}, "out of range"), ({"seed": 1.5}, "whole number"), ({"dilate_size": 10**6}, "out of range"),
    ({"max_seconds": 0}, "out of range"), ({"max_seconds": float("nan")}, "finite number"),
    ({"prompt": "  "}, "empty"), ({"prompt": "a\nb"}, "control"), ({"points": [[10, 10, 2]]}, "label"),
    ({"points": [[10, 10, 0]]}, "at least one click"), ({"points": [[500, 10, 1]]}, "outside"),
    ({"points": []}, "non-empty"), ({"box": [50, 10, 20, 40]}, "x0 < x1"), ({"box": [1, 2, 3]}, "[x0, y0, x1, y1]"),
])
def test_malformed_edits_are_refused_with_a_reason(edits, message):
    with pytest.raises(EditError, match=message):
        check_edits(edits, (96, 64))


# ----------------------------------------------------------------------------- the server refuses

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the tests below: its port and output folder, with a symlink to a file outside
    it, a symlink to a folder outside it and a hidden folder."""
    tmp = tmp_path_factory.mktemp("served")
    out = make_run(tmp / "out", ROWS, [FAILURE])
    (tmp / "secret.txt").write_text("not yours")
    os.symlink(tmp / "secret.txt", out / "clips" / "a" / "leak.txt")
    os.symlink(tmp, out / "clips" / "b" / "up")
    (out / "clips" / ".hidden").mkdir()
    (out / "clips" / ".hidden" / "x.txt").write_text("hidden")
    with serving(out) as port:
        yield port, out


@pytest.fixture
def server(served):
    return served[0]


def review_file(out: Path) -> bytes | None:
    path = out / store.REVIEW_FILE
    return path.read_bytes() if path.exists() else None


@pytest.mark.parametrize("path", [
    "/files/../secret.txt", "/files/clips/../../secret.txt", "/files/%2e%2e/secret.txt",
    "/files/clips/a/..%2f..%2f..%2fsecret.txt", "/files//etc/passwd", "/files/%2Fetc%2Fpasswd",
    "/files/clips/a/leak.txt", "/files/clips/b/up/secret.txt", "/files/clips/.hidden/x.txt",
])
def test_only_files_under_the_output_folder_are_served(server, path):
    status, _, payload = call(server, "GET", path)
    assert status in (403, 404) and b"not yours" not in payload and b"root:" not in payload
    if status == 403:
        assert "refused" in detail(payload)


def test_a_clip_file_is_served_with_ranges_for_seeking(server):
    status, headers, payload = call(server, "GET", "/files/clips/a/result.mp4", headers={"Range": "bytes=10-19"})
    assert status == 206 and payload == b"0123456789" and headers["content-range"] == "bytes 10-19/1000"


def test_a_request_to_another_host_name_or_from_another_site_is_refused(server):
    status, _, payload = call(server, "GET", "/api/status", headers={"Host": "attacker.example:80"})
    assert status == 403 and "attacker.example" in detail(payload)
    before = review_file(served_dir(server))
    status, _, payload = call(server, "POST", "/api/clips/a/verdict", {"verdict": "accepted"},
                              headers={"Origin": "http://attacker.example"})
    assert status == 403 and review_file(served_dir(server)) == before


def served_dir(port) -> Path:
    return Path(json.loads(call(port, "GET", "/api/status")[2])["output_dir"])


@pytest.mark.parametrize("path, body, expected", [
    ("/api/clips/a/verdict", {"verdict": "maybe"}, 422),
    ("/api/clips/a/verdict", {"verdict": "accepted", "score": 3}, 422),
    ("/api/clips/a/verdict", ["accepted"], 422),
    ("/api/clips/a/requeue", {"edits": {"seed": "seven"}}, 422),
    ("/api/clips/a/requeue", {"edits": {"points": [[1e9, 0, 1]]}}, 422),
    ("/api/clips/f/requeue", {"edits": {"points": [[1, 1, 1]]}}, 422),  # a failed clip has no frame 0
    ("/api/clips/a/requeue", {"edits": {"dilate_size": -3}, "note": 5}, 422),
    ("/api/clips/nope/requeue", {"edits": {}}, 404),
    ("/api/clips/..%2Fx/verdict", {"verdict": "accepted"}, 404),
    ("/api/clips/a%20b/verdict", {"verdict": "accepted"}, 400),
    ("/api/clips/a/mask", {"points": None, "box": None}, 422),
])
def test_a_malformed_edit_gets_a_4xx_saying_why_and_nothing_is_written(served, path, body, expected):
    port, out = served
    before = review_file(out)
    status, _, payload = call(port, "POST", path, body)
    assert status == expected and detail(payload)
    assert review_file(out) == before


def test_a_body_that_is_not_json_is_refused(served):
    port, out = served
    before = review_file(out)
    status, _, payload = call(port, "POST", "/api/clips/a/verdict", raw=b"{verdict: accepted")
    assert status == 422 and detail(payload)
    assert review_file(out) == before


def test_with_a_token_every_request_must_carry_it(run_dir):
    token = "t" * 32
    with serving(run_dir, token=token) as port:
        assert call(port, "GET", "/api/status")[0] == 401
        assert call(port, "GET", "/files/clips/a/result.mp4")[0] == 401
        assert call(port, "GET", "/api/status", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(port, "GET", "/api/status", headers={"Authorization": f"Bearer {token}"})[0] == 200
        status, headers, _ = call(port, "GET", f"/?token={token}")   # the printed URL: a cookie, then the page
        assert status == 303 and token in headers["set-cookie"] and "token" not in headers["location"]
        assert call(port, "GET", "/api/status", headers={"Cookie": f"vp_review_token={token}"})[0] == 200
        assert call(port, "GET", "/api/status", headers={"Cookie": "vp_review_token=old",  # any one that fits
                                                         "Authorization": f"Bearer {token}"})[0] == 200


def test_any_bind_but_loopback_makes_a_token():
    from vp_ray.review.__main__ import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("myhost")


def test_verdicts_and_edits_round_trip_through_the_api(served):
    server, run_dir = served
    assert call(server, "POST", "/api/clips/a/verdict", {"verdict": "rejected", "note": "smeared"})[0] == 200
    status, _, payload = call(server, "POST", "/api/clips/b/requeue",
                              {"edits": {"seed": 7, "points": [[40, 30, 1]], "prompt": "an empty road"}})
    assert status == 200, payload
    rows = store.ReviewStore(run_dir).read()
    assert rows["a"]["verdict"] == "rejected" and rows["a"]["note"] == "smeared"
    assert rows["b"] | {"requeued_at": "", "reviewed_at": ""} == store.blank("b") | {
        "verdict": "requeued", "requeue": "pending", "seed": 7, "prompt": "an empty road",
        "points": "[[40.0, 30.0, 1]]", "frame_width": 96, "frame_height": 64}
    listing = json.loads(call(server, "GET", "/api/clips?f=review_verdict:=:requeued")[2])
    assert [row["clip_id"] for row in listing["rows"]] == ["b"] and listing["rows"][0]["review_requeue"] == "pending"
    # Judged again: the pending requeue is called off.
    call(server, "POST", "/api/clips/b/verdict", {"verdict": "accepted"})
    assert store.ReviewStore(run_dir).read()["b"]["requeue"] == ""


# ----------------------------------------------------------------------------- what a run takes from a review

def test_a_requeue_run_redoes_exactly_the_requeued_clips_and_keeps_the_rest(tmp_path):
    """Without Ray: the plan, the shards, a requeued clip redone although complete, the rows carried,
    and the review marked (a clip whose edits changed meanwhile stays pending)."""
    from vp_ray.clip.records import plan_dataset
    from vp_ray.review import requeue
    from vp_ray.runtime import todo
    from vp_ray.runtime.manifest import Ledger
    from vp_ray.stages.lineup import run_context
    from vp_ray.stages.read import ReadRecords

    rows = pd.DataFrame({"clip_id": ["c0", "c1", "c2"], "video_path": ["v0.mp4", "v1.mp4", "v2.mp4"],
                         "mask_path": ["m.npz"] * 3, "mask_id": [1] * 3})
    rows.to_csv(tmp_path / "clips.csv", index=False)
    out = tmp_path / "out"
    cfg = compose_config([f"output_dir={out}", "dataset=csv", f"dataset.path={tmp_path / 'clips.csv'}",
                          "review.requeue=true"])
    first = plan_dataset(cfg)
    run = run_context(cfg, first)
    read = ReadRecords(cfg, first, run)
    raws = {r["clip_id"]: {k: str(v).encode() for k, v in r.items()} for r in rows.to_dict("records")}
    for clip_id in ("c0", "c1"):  # complete for these settings
        row = read.read_one(raws[clip_id])
        outputs.commit_clip(out, clip_id, lambda folder: None,
                            lambda row=row: {**row, "status": "ok", "source_width": 96, "source_height": 64,
                                             "fingerprint": run.clip_settings.fingerprint(row)})
    pd.DataFrame([{"clip_id": c, "status": "ok", "prompt": "old"} for c in ("c0", "c1")],
                 columns=MANIFEST_COLUMNS).to_parquet(out / "manifest.parquet")
    pd.DataFrame([FAILURE | {"clip_id": "c2"}], columns=FAILURE_COLUMNS).to_parquet(out / "failures.parquet")
    reviews = store.ReviewStore(out)
    for clip_id, edits in (("c1", {}), ("c9", {"seed": 3}), ("c0", {"seed": 7})):
        reviews.update([clip_id], lambda row, e=edits: row | check_edits(e, None) | {
            "verdict": "requeued", "requeue": "pending", "requeued_at": "t1"})
    reviews.update(["c0"], lambda row: row | {"requeue": "done"})  # redone before: its edits stay

    review = requeue.read_review(cfg)
    assert review.redo == {"c1", "c9"} and review.edits == {"c0": {"seed": 7}, "c9": {"seed": 3}}
    plan = todo.skip_complete(cfg, run, todo.write_todo(cfg, review.edits, review.redo), pytest.fail)
    assert plan.pending == 1 and plan.redo == {"c1"}  # c9 is not in the dataset: it stays pending
    assert plan.edits == review.edits
    assert ReadRecords(cfg, plan, run).read_one(raws["c1"])["status"] == "pending"  # complete, yet redone
    assert ReadRecords(cfg, plan, run).read_one(raws["c0"])["seed"] == 7

    ledger = Ledger(str(out))
    assert requeue.carry_the_rest(ledger, str(out), plan.redo) == 2
    assert ledger.table()[["clip_id", "status"]].values.tolist() == [["c0", "done_before"], ["c2", "failed"]]
    reviews.update(["c9"], lambda row: row | {"requeued_at": "t2"})  # edited while the run went on
    finished = [{"clip_id": "c1", "status": "ok"}, {"clip_id": "c9", "status": "failed", "error": "x"}]
    assert requeue.mark_redone(str(out), finished, review) == 1
    after = reviews.read()
    assert after["c1"]["requeue"] == "done" and after["c1"]["redone_at"] and after["c9"]["requeue"] == "pending"
