"""The table printed at the end of a run."""

from __future__ import annotations

from vp_ray.clip.records import ClipRecord
from vp_ray.clip.rows import new_row
from vp_ray.runtime.graph import RunResult
from vp_ray.runtime.manifest import Ledger
from vp_ray.runtime.summary import format_summary


def clip(clip_id, worker, plan, kernel=""):
    return {**new_row(ClipRecord(clip_id=clip_id, video_path="/v.mp4")), "status": "ok", "time_inpaint_s": 99.0,
            "inpaint_worker": worker, "memory_plan": plan, "attention_backend": kernel}


def ledger_of(folder, rows):
    """A ledger that took ``rows``, as the driver gives them to it."""
    ledger = Ledger(str(folder))
    for row in rows:
        ledger.add(row)
    return ledger


def summary_value(summary: str, key: str) -> str | None:
    return next((line[len(key):].strip() for line in summary.splitlines() if line.startswith(key)), None)


def test_summary_names_each_memory_plan_with_its_number_of_actors(tmp_path):
    ledger = ledger_of(tmp_path, [clip("a", "gpu=0 pid=1", "text_encoder_offload + large VAE tiles"),
                                  clip("b", "gpu=1 pid=2", "text_encoder_offload + large VAE tiles"),
                                  clip("c", "gpu=0 pid=1", "text_encoder_offload + large VAE tiles"),
                                  clip("d", "gpu=2 pid=3", "model_offload + small VAE tiles")])
    summary = format_summary(RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0)
    assert summary_value(summary, "memory plan") == ("model_offload + small VAE tiles (1 actor); "
                                                     "text_encoder_offload + large VAE tiles (2 actors)")


def test_summary_leaves_out_the_memory_plan_of_models_without_one(tmp_path):
    ledger = ledger_of(tmp_path, [clip("a", "gpu=0 pid=1", "")])
    summary = format_summary(RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0)
    assert summary_value(summary, "memory plan") is None
    assert summary_value(summary, "compiled (blocks; VAE)") is None


def test_summary_names_each_attention_kernel_with_its_number_of_actors(tmp_path):
    ledger = ledger_of(tmp_path, [clip("a", "gpu=0 pid=1", "resident", "cudnn"),
                                  clip("b", "gpu=1 pid=2", "resident", "flash"),
                                  clip("c", "gpu=0 pid=1", "resident", "cudnn"),
                                  clip("d", "gpu=2 pid=3", "resident", "cudnn")])
    summary = format_summary(RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0)
    assert summary_value(summary, "attention kernel") == "cudnn (2 actors); flash (1 actor)"
    ledger = ledger_of(tmp_path, [clip("a", "gpu=0 pid=1", "")])   # a model without attention kernels
    summary = format_summary(RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0)
    assert summary_value(summary, "attention kernel") is None


def test_summary_says_whether_the_actors_compiled_and_why(tmp_path):
    compiled = "on: auto, 250 steps per actor >= 55; VAE off: auto, 5 windows per actor < 68"
    ledger = ledger_of(tmp_path, [{**clip(clip_id, worker, "resident"), "compiled": compiled}
                                  for clip_id, worker in (("a", "gpu=0 pid=1"), ("b", "gpu=1 pid=2"),
                                                          ("c", "gpu=0 pid=1"))])
    summary = format_summary(RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0)
    assert summary_value(summary, "compiled (blocks; VAE)") == f"{compiled} (2 actors)"



def test_summary_gives_the_drivers_peak_rss_of_the_whole_run(tmp_path, monkeypatch):
    """The process's peak (``ru_maxrss``, KiB on Linux), not its RSS now: memory the driver held at the end
    of the run (manifest, report) and gave back before the summary still counts."""
    import resource
    from types import SimpleNamespace

    from vp_ray.runtime import summary

    asked = []
    monkeypatch.setattr(summary.resource, "getrusage",
                        lambda who: asked.append(who) or SimpleNamespace(ru_maxrss=612 * 1024))
    ledger = ledger_of(tmp_path, [clip("a", "gpu=0 pid=1", "")])
    text = format_summary(RunResult(ledger, False, None, None), str(tmp_path), 1.0)
    assert summary_value(text, "driver peak RSS") == "612 MiB" and asked == [resource.RUSAGE_SELF]
