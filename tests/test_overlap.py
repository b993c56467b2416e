"""The work around the denoising loop: each clip's GPU timeline, the GPU's idle time between clips,
and the next clip's host work overlapping the GPU's (never two clips on the GPU at once)."""

from __future__ import annotations

import math
import random
import threading
import time

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config

from vp_ray.clip import workdir
from vp_ray.clip.records import ClipRecord
from vp_ray.clip.rows import new_row
from vp_ray.models import Inpainter
from vp_ray.models.timeline import Timeline, clip_phases
from vp_ray.runtime import gpu_idle, graph
from vp_ray.runtime.graph import RunResult
from vp_ray.runtime.manifest import Ledger
from vp_ray.runtime.summary import format_summary
from vp_ray.stages.inpaint import InpaintClips
from vp_ray.stages.turns import ClipTurns

WAIT = 60  # seconds: only turns a hang into a failure


def test_a_clips_phases_are_summed_over_their_spans_and_the_loop_is_found():
    marks = [("prompt", 100.0), ("encode", 100.5), ("denoise", 102.0), ("latents", 150.0), ("encode", 150.1),
             ("denoise", 151.0), ("latents", 199.0), ("decode", 199.2), ("convert", 202.0), ("end", 202.5)]
    phases = clip_phases(marks)
    assert (phases.gpu_started, phases.denoise_started, phases.denoise_finished, phases.gpu_finished) == \
        (100.0, 102.0, 199.0, 202.5)
    assert phases.seconds == pytest.approx({"fill": 0.0, "prompt": 0.5, "encode": 2.4, "denoise": 96.0,
                                            "latents": 0.3, "decode": 2.8, "convert": 0.5})
    with pytest.raises(ValueError, match="no denoising loop"):
        clip_phases([("prompt", 1.0), ("end", 2.0)])


def test_a_timeline_on_the_cpu_reads_the_wall_clock(monkeypatch):
    clock = iter([10.0, 11.0, 12.5, 13.0])
    monkeypatch.setattr(time, "time", lambda: next(clock))
    timeline = Timeline("cpu")
    for phase in ("prompt", "denoise", "decode"):
        timeline.mark(phase)
    phases = timeline.read()
    assert (phases.gpu_started, phases.denoise_started, phases.denoise_finished, phases.gpu_finished) == \
        (10.0, 11.0, 12.5, 13.0)
    with pytest.raises(ValueError, match="unknown phase 'loop'"):
        timeline.mark("loop")


class FakeEvent:
    """A CUDA event at GPU time ``t`` (seconds)."""

    def __init__(self, t):
        self.t = t

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.t - self.t) * 1000


def test_a_timeline_on_the_gpu_places_its_events_on_the_wall_clock_from_the_last_one(monkeypatch):
    """The events' GPU times are anchored at the wall-clock time the host sees the last one."""
    timeline = Timeline("cpu")
    timeline.cuda = True
    gpu_clock = iter([5.0, 5.5, 8.0, 8.25])
    monkeypatch.setattr(timeline, "_now", lambda: FakeEvent(next(gpu_clock)))
    monkeypatch.setattr(time, "time", lambda: 1000.0)
    for phase in ("prompt", "denoise", "decode"):
        timeline.mark(phase)
    phases = timeline.read()
    assert (phases.gpu_started, phases.denoise_started, phases.denoise_finished, phases.gpu_finished) == \
        (996.75, 997.25, 999.75, 1000.0)


def timed(clip_id, worker, gpu_started, loop, gpu_finished, started, finished, **parts):
    return {**new_row(ClipRecord(clip_id=clip_id, video_path="/v.mp4")), "status": "ok", "inpaint_worker": worker,
            "time_inpaint_s": finished - started, "gpu_started": gpu_started, "denoise_started": loop[0],
            "denoise_finished": loop[1], "gpu_finished": gpu_finished, "inpaint_started": started,
            "inpaint_finished": finished, **parts}


def test_gpu_idle_between_clips_is_counted_per_actor_in_the_order_the_gpu_ran_them():
    rows = [timed("a2", "gpu=0 pid=1", 130.2, (133.0, 150.0), 153.0, 129.0, 153.4, time_load_s=0.3),
            timed("b1", "gpu=1 pid=2", 100.0, (101.0, 120.0), 122.0, 99.0, 122.2, time_load_s=0.5),
            timed("a1", "gpu=0 pid=1", 100.0, (103.0, 127.0), 130.0, 99.5, 130.5, time_load_s=0.1),
            timed("b2", "gpu=1 pid=2", 123.0, (124.0, 140.0), 142.0, 122.3, 142.1, time_load_s=0.7),
            {**timed("old", "gpu=0 pid=1", 0.0, (0.0, 0.0), 0.0, 0.0, 0.0)}]   # no timeline: left out
    actors = gpu_idle.actor_gaps(rows)
    assert sorted(actors) == ["gpu=0 pid=1", "gpu=1 pid=2"]
    a, b = actors["gpu=0 pid=1"], actors["gpu=1 pid=2"]
    assert [row["clip_id"] for row in a.clips] == ["a1", "a2"]
    assert a.idle == pytest.approx([0.2]) and a.between_loops == pytest.approx([6.0])
    assert a.handover == pytest.approx([-1.5])   # the second call began before the first ended
    assert b.idle == pytest.approx([1.0]) and b.between_loops == pytest.approx([4.0])
    # a2 was at the actor before a1 finished; b2 came 0.3 s after b1's frames were back.
    assert a.waiting_for_clip == [0.0] and b.waiting_for_clip == pytest.approx([0.3])
    assert gpu_idle.outside_loop(a.clips)["time_load_s"] == pytest.approx(0.2)
    assert gpu_idle.idle_summary(pd.DataFrame(rows)) == "0.60 s median, 1.00 s max (2 gaps, 2 actors)"


def test_the_summary_lines_column_arithmetic_finds_the_gaps_the_per_row_view_finds():
    """``idle_gaps`` (the summary's and report's line, on columns) against ``actor_gaps`` (rows): three
    actors, clips in shuffled order, some without a timeline or a worker."""
    rng = random.Random(7)
    rows, clock = [], {"gpu=0": 100.0, "gpu=1": 90.0, "gpu=2": 95.0}  # each actor's last clip's end
    for i in range(200):
        worker = rng.choice(["gpu=0", "gpu=1", "gpu=2", None])
        begin = clock.get(worker, 50.0) + rng.uniform(0.0, 2.0)
        end = begin + rng.uniform(5.0, 9.0)
        if worker is not None:
            clock[worker] = end
        rows.append(timed(f"c{i}", worker, begin if rng.random() > 0.1 else 0.0, (begin + 1, end - 1), end,
                          begin - 0.5, end + 0.1))
    rng.shuffle(rows)
    expected = sorted(gap for actor in gpu_idle.actor_gaps(rows).values() for gap in actor.idle)
    idle, actors = gpu_idle.idle_gaps(pd.DataFrame(rows))
    assert len(expected) > 80 and sorted(idle) == pytest.approx(expected)
    assert actors == len(gpu_idle.actor_gaps(rows)) == 3


def test_the_run_summary_shows_the_gpu_idle_time_between_clips(tmp_path):
    rows = [timed("a1", "gpu=0 pid=1", 100.0, (103.0, 127.0), 130.0, 99.5, 130.5),
            timed("a2", "gpu=0 pid=1", 130.25, (133.0, 150.0), 153.0, 129.0, 153.4)]
    ledger = Ledger(str(tmp_path))
    for row in rows:
        ledger.add(row)
    summary = format_summary(RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0).splitlines()
    line = next(line for line in summary if line.startswith("GPU idle between clips"))
    assert line.split("  ", 1)[1].strip() == "0.25 s median, 0.25 s max (1 gap, 1 actor)"
    ledger = Ledger(str(tmp_path))
    ledger.add(rows[0])
    assert "GPU idle" not in format_summary(RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0)


def test_the_run_report_counts_the_gpu_idle_time_between_clips(tmp_path):
    import pandas as pd

    from vp_ray.runtime.report import RunData, run_counts

    rows = [timed("a1", "gpu=0 pid=1", 100.0, (103.0, 127.0), 130.0, 99.5, 130.5),
            timed("a2", "gpu=0 pid=1", 130.25, (133.0, 150.0), 153.0, 129.0, 153.4)]
    data = RunData(tmp_path, pd.DataFrame(rows), pd.DataFrame(), None, [])
    assert dict(run_counts(data))["GPU idle between clips"] == "0.25 s median, 0.25 s max (1 gap, 1 actor)"
    older = RunData(tmp_path, pd.DataFrame(rows).drop(columns=["gpu_started"]), pd.DataFrame(), None, [])
    assert dict(run_counts(older))["GPU idle between clips"] == "n/a"


# --------------------------------------------------------------------------------------- the stage


class Journal:
    """What happened, in order, with an event per entry to wait for."""

    def __init__(self):
        self.entries: list[str] = []
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def event(self, entry: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(entry, threading.Event())

    def add(self, entry: str) -> None:
        with self.lock:
            self.entries.append(entry)
        self.event(entry).set()

    def wait(self, entry: str, timeout: float = WAIT) -> bool:
        return self.event(entry).wait(timeout)


class HostThenGpu(Inpainter):
    """An inpainter with a host share (``prepare_clip``) and a GPU share that journals both; clip
    "a" holds the GPU until it has seen clip "b" prepared, and a while longer to catch "b" on the GPU."""

    def __init__(self, journal: Journal):
        self.journal, self.on_gpu, self.most_on_gpu = journal, 0, 0

    def prepare_clip(self, frames, masks, prompt, masked_video=None):
        self.journal.add(f"prepared {prompt}")
        return prompt, frames

    def inpaint_prepared(self, prepared, seed, progress=None):
        prompt, frames = prepared
        self.on_gpu += 1
        self.most_on_gpu = max(self.most_on_gpu, self.on_gpu)
        self.journal.add(f"gpu {prompt}")
        if prompt == "a":
            assert self.journal.wait("prepared b")
            self.journal.wait("gpu b", timeout=1.0)   # never comes while "a" holds the GPU's turn
        self.on_gpu -= 1
        self.journal.add(f"gpu done {prompt}")
        return frames + 1

    def reduce_memory(self):
        return False

    def release_memory(self):
        pass


def stage_with(inpainter, turns=None):
    stage = InpaintClips.__new__(InpaintClips)
    stage.cfg = compose_config(["model=sim"])
    stage.inpainter, stage.baseline_bytes, stage.restart_needed = inpainter, 0, False
    stage.worker, stage.turns = "node=n gpu=0 pid=1", turns or ClipTurns()
    stage.clips_share_actor = True
    return stage


def clip_row(tmp_path, name):
    work = tmp_path / name
    work.mkdir()
    frames = np.full((9, 8, 8, 3), ord(name), np.uint8)
    workdir.save_array(work, workdir.FRAMES, frames)
    workdir.save_array(work, workdir.MASKS, np.ones((9, 8, 8), bool))
    return {"clip_id": name, "prompt": name, "work_dir": str(work), "effective_seed": 0, "warnings": "",
            "effective_max_seconds": 1.0, "out_fps": 8.0, "num_frames": 9}


def process_a_then_b(stage, given: dict, journal: Journal) -> dict:
    """The stage's calls on clips "a" and "b" in two threads, as an actor with two calls runs them: b
    sent once a is on the GPU. The rows they returned; a call's error fails the test."""
    rows, errors = {}, []

    def process(name):
        try:
            rows[name] = stage.process(given[name])
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            errors.append(error)

    first = threading.Thread(target=process, args=("a",))
    first.start()
    assert journal.wait("gpu a")
    second = threading.Thread(target=process, args=("b",))
    second.start()
    first.join(WAIT)
    second.join(WAIT)
    assert not errors, errors
    return rows


def test_the_next_clip_is_read_and_prepared_while_the_gpu_works_and_the_last_saved_beside_the_next(
        tmp_path, monkeypatch):
    journal = Journal()
    inpainter = HostThenGpu(journal)
    stage = stage_with(inpainter)
    save = workdir.save_array

    def journaled_save(work_dir, name, array):
        if name == workdir.RESULT and str(work_dir).endswith("/a"):
            # Clip a's result is saved after its turn: clip b's GPU work starts meanwhile.
            assert journal.wait("gpu b")
        save(work_dir, name, array)
        journal.add(f"saved {str(work_dir)[-1]}")

    given = {name: clip_row(tmp_path, name) for name in "ab"}
    monkeypatch.setattr(workdir, "save_array", journaled_save)
    rows = process_a_then_b(stage, given, journal)
    # b was read and prepared during a's turn; b's turn came after a's; a was saved once b's turn began.
    entries = journal.entries
    assert entries[:5] == ["prepared a", "gpu a", "prepared b", "gpu done a", "gpu b"]
    assert sorted(entries[5:]) == ["gpu done b", "saved a", "saved b"]
    assert entries.index("gpu done b") < entries.index("saved b")
    assert inpainter.most_on_gpu == 1
    # b waited through the second a held its turn after b was prepared: not b's own time.
    b = rows["b"]
    assert b["time_inpaint_s"] < b["inpaint_finished"] - b["inpaint_started"] - 0.5
    for name in "ab":
        np.testing.assert_array_equal(np.load(tmp_path / name / workdir.RESULT), np.full((9, 8, 8, 3), ord(name) + 1))
        assert rows[name]["attempts"] == 1 and rows[name]["inpaint_finished"] >= rows[name]["inpaint_started"]


def test_a_clip_whose_worker_died_before_runs_alone_and_holds_back_the_clips_after_it():
    turns, journal = ClipTurns(), Journal()
    release = {name: threading.Event() for name in ("first", "alone", "after")}

    def stay(name, alone=False):
        with turns.clip(alone=alone):
            journal.add(f"in {name}")
            assert release[name].wait(WAIT)
            journal.add(f"out {name}")

    def waiting(count):
        deadline = time.monotonic() + WAIT
        while len(turns._state._waiters) < count:
            assert time.monotonic() < deadline, "a thread never came to wait"
            time.sleep(0.01)

    threads = [threading.Thread(target=stay, args=("first",))]
    threads[0].start()
    assert journal.wait("in first")
    threads.append(threading.Thread(target=stay, args=("alone", True)))
    threads[1].start()
    waiting(1)
    threads.append(threading.Thread(target=stay, args=("after",)))
    threads[2].start()
    waiting(2)
    for name, event in release.items():
        event.set()
        assert journal.wait(f"out {name}")
    for thread in threads:
        thread.join(WAIT)
    assert journal.entries == ["in first", "out first", "in alone", "out alone", "in after", "out after"]


class Counting(Inpainter):
    """An inpainter that returns the frames and counts its calls."""

    def __init__(self):
        self.calls = 0

    def inpaint_clip(self, frames, masks, prompt, seed, progress=None, masked_video=None):
        self.calls += 1
        return frames

    def reduce_memory(self):
        return False

    def release_memory(self):
        pass


class JournaledGpu(Counting):
    """An inpainter that returns the frames and journals each clip's GPU turn ("gpu <prompt>")."""

    def __init__(self, journal: Journal):
        super().__init__()
        self.journal = journal

    def inpaint_clip(self, frames, masks, prompt, seed, progress=None, masked_video=None):
        self.journal.add(f"gpu {prompt}")
        return super().inpaint_clip(frames, masks, prompt, seed, progress, masked_video)


def test_a_finished_clip_whose_answer_was_lost_with_its_worker_is_neither_redone_nor_charged(tmp_path):
    # With two calls in an actor, the clip beside a finished one may crash the process after the
    # finished call ended and before Ray had its answer: Ray runs that call again. It was inpainted
    # again and charged the death; with retry.max_worker_deaths=1 a clip that had succeeded failed
    # as worker_died.
    row = {**new_row(ClipRecord(clip_id="a", video_path="/v.mp4")), **clip_row(tmp_path, "a")}
    first = stage_with(Counting())
    done = first.process(dict(row))
    assert first.inpainter.calls == 1 and workdir.worker_attempts(row["work_dir"], "inpaint") == 1
    again = stage_with(Counting())  # the restarted actor; the clip now counts as having died once
    again.cfg.retry.max_worker_deaths = 0
    retried = again.process(dict(row))
    assert again.inpainter.calls == 0 and workdir.worker_attempts(row["work_dir"], "inpaint") == 1
    assert pd.Series(retried, dtype=object).equals(pd.Series(done, dtype=object))  # NaN equals NaN here
    assert retried["inpaint_worker"] == first.worker


def test_a_clip_is_finished_on_record_before_the_clip_after_it_is_admitted(tmp_path, monkeypatch):
    # A clip that died beside another runs alone; it has no death to spare. Its finished row was once
    # saved after it left its turns: the clip admitted next crashed the process before the save, and
    # the clip that had succeeded alone failed as worker_died ("died 2 time(s)").
    journal = Journal()
    stage = stage_with(JournaledGpu(journal))
    given = {name: clip_row(tmp_path, name) for name in "ab"}
    (tmp_path / "a" / "inpaint.attempts").write_text("1")  # a died once before: it runs alone
    save = workdir.save_finished_row

    def journaled(work_dir, stage_name, row):
        if row["clip_id"] == "a":
            journal.wait("gpu b", timeout=2.0)  # comes meanwhile only if b was let in before a's save
        save(work_dir, stage_name, row)
        journal.add(f"finished {row['clip_id']}")

    monkeypatch.setattr(workdir, "save_finished_row", journaled)
    process_a_then_b(stage, given, journal)
    assert journal.entries == ["gpu a", "finished a", "gpu b", "finished b"]


@pytest.mark.parametrize("overlap,calls,threads", [(True, 2, True), (False, None, False)])
def test_overlap_clips_gives_each_inpainting_actor_two_calls_at_once(overlap, calls, threads):
    cfg = compose_config(["model=sim", f"cluster.overlap_clips={str(overlap).lower()}"])
    compute = graph.actor_pools(cfg, [InpaintClips], {"CPU": 8, "GPU": 2})[InpaintClips]["compute"]
    assert compute.max_tasks_in_flight_per_actor == 2
    assert (compute.max_concurrent_calls_per_actor, compute.enable_true_multi_threading) == (calls, threads)


@pytest.mark.parametrize("overlap", [True, False])
def test_a_growing_pool_grows_once_its_actors_hold_all_the_clips_they_can(overlap):
    # cluster=multinode's pool starts at one actor and grows onto nodes that join. With both calls
    # running at once, Ray Data's default threshold (1.75 calls per call slot) was out of reach
    # (at most 2 / 2): the pool never grew past one actor.
    import ray

    cfg = compose_config(["model=sim", "cluster.autoscale=true", f"cluster.overlap_clips={str(overlap).lower()}"])
    pools = graph.actor_pools(cfg, [InpaintClips], {"CPU": 8, "GPU": 4})
    compute = pools[InpaintClips]["compute"]
    ctx = ray.data.DataContext.get_current().copy()
    graph.grow_when_full(ctx, pools)
    fullest = compute.max_tasks_in_flight_per_actor / (compute.max_concurrent_calls_per_actor or 1)
    threshold = ctx.autoscaling_config.actor_pool_util_upscaling_threshold
    assert compute.min_size < compute.max_size and fullest >= threshold
    assert math.ceil(fullest / threshold - 1) >= 1  # Ray Data's step from one actor: one more
    assert ctx.autoscaling_config.actor_pool_util_downscaling_threshold < threshold


# --------------------------------------------------------------------------------------- the tiny model


@pytest.fixture(scope="module")
def tiny_inpainter(tmp_path_factory):
    from vp_ray.config import Dtype, VideoPainterModelConfig
    from vp_ray.models.tiny import ensure_tiny_tree
    from vp_ray.models.videopainter import VideoPainter

    base, branch = ensure_tiny_tree(tmp_path_factory.getbasetemp() / "tiny-ckpt")
    return VideoPainter(VideoPainterModelConfig(name="tiny", dtype=Dtype.float32, base_model_path=str(base),
                                                         branch_path=str(branch), num_inference_steps=2))


@pytest.mark.slow
def test_a_prepared_clip_gives_the_bytes_of_the_arrays_the_pipeline_took_before(tiny_inpainter):
    """prepare_clip (the host's share, host tensors) then inpaint_prepared gives what the pipeline
    gave for the same clip prepared as numpy arrays in one call, byte for byte; and the clip's GPU
    timeline covers every phase in order."""
    import torch

    from vp_ray.models.long_video import inpaint_windows
    from vp_ray.models.tiny import TINY_HEIGHT, TINY_WIDTH
    from vp_ray.models.videopainter import condition_inputs, mirrored_indices

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (17, TINY_HEIGHT, TINY_WIDTH, 3), dtype=np.uint8)
    masks = np.zeros((17, TINY_HEIGHT, TINY_WIDTH), dtype=bool)
    masks[:, 16:48, 24:64] = True
    prepared = tiny_inpainter.prepare_clip(frames, masks, "a clean road scene")
    assert isinstance(prepared.video, torch.Tensor) and len(prepared.video) == 49 and prepared.count == 17
    out = tiny_inpainter.inpaint_prepared(prepared, seed=3)

    cfg, order = tiny_inpainter.cfg, mirrored_indices(17, 49)
    video, cleared = condition_inputs(frames[order], masks[order], True, cfg["first_frame_fill"])
    before = inpaint_windows(
        tiny_inpainter.pipe, video, cleared, 49, overlap=1, image=video[0], prompt="a clean road scene",
        negative_prompt=cfg["negative_prompt"], guidance_scale=cfg["guidance_scale"], num_inference_steps=2,
        use_dynamic_cfg=cfg["use_dynamic_cfg"], generator=torch.Generator().manual_seed(3),
        replace_gt=cfg["replace_gt"], mask_add=cfg["mask_add"], output_type="uint8")[:17]
    assert out.dtype == np.uint8 and np.array_equal(out, before)

    phases = tiny_inpainter.last_phases
    assert phases.gpu_started <= phases.denoise_started < phases.denoise_finished <= phases.gpu_finished
    assert all(phases.seconds[phase] > 0 for phase in ("prompt", "encode", "denoise", "decode", "convert"))
    assert phases.seconds["fill"] == 0
    assert sum(phases.seconds.values()) == pytest.approx(phases.gpu_finished - phases.gpu_started)
    assert tiny_inpainter.pipe.timeline is None   # only the clip's own call is timed
