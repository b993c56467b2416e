"""A clip's work folder across tries of its prepare stage (vp_ray/clip/workdir.py)."""

import numpy as np
import pytest

from vp_ray.clip import workdir


def test_prepare_run_again_in_the_same_run_keeps_the_files_a_later_stage_reads(tmp_path):
    # Ray runs prepare again for a clip whose first output was lost with a node, while the
    # inpainting stage may still read the first try's frames: emptying the folder made it fail
    # with FileNotFoundError, and it reset the worker-death counter.
    first = workdir.make_work_dir(tmp_path, "c04", run="logs/run-1")
    workdir.save_array(first, workdir.FRAMES, np.ones((2, 4, 4, 3), np.uint8))
    workdir.count_worker_attempt(first, "inpaint", limit=3)
    again = workdir.make_work_dir(tmp_path, "c04", run="logs/run-1")
    assert again == first
    assert workdir.load_array(again, workdir.FRAMES).sum() == 96
    assert workdir.worker_attempts(again, "inpaint") == 1


def test_a_folder_left_by_an_earlier_run_or_of_no_named_run_starts_empty(tmp_path):
    old = workdir.make_work_dir(tmp_path, "c04", run="logs/run-1")
    workdir.save_array(old, workdir.FRAMES, np.ones((2, 4, 4, 3), np.uint8))
    workdir.count_worker_attempt(old, "inpaint", limit=3)
    new = workdir.make_work_dir(tmp_path, "c04", run="logs/run-2")
    assert not workdir.has_array(new, workdir.FRAMES) and workdir.worker_attempts(new, "inpaint") == 0
    workdir.save_array(new, workdir.FRAMES, np.ones((2, 4, 4, 3), np.uint8))
    unnamed = workdir.make_work_dir(tmp_path, "c04")
    assert not workdir.has_array(unnamed, workdir.FRAMES)


def test_a_stage_run_again_after_a_failure_fails_the_same_way_and_the_writer_clears_it(tmp_path):
    # Two clips share an inpainting actor (cluster.overlap_clips); when one kills the process, Ray
    # runs the other's call again even if it had already failed. Its files must still be there:
    # the retry once ended in FileNotFoundError (masks.npy) instead of the clip's own failure.
    from conftest import compose_config

    from vp_ray.clip.records import ClipRecord
    from vp_ray.clip.rows import FAILED, new_row, rows_to_frame, run_stage
    from vp_ray.errors import ClipError
    from vp_ray.stages import ClipSettings, RunContext
    from vp_ray.stages.write import WriteClips

    work = workdir.make_work_dir(tmp_path, "c1", run="logs/run-1")
    workdir.save_array(work, workdir.MASKS, np.ones((2, 4, 4), bool))
    batch = rows_to_frame([{**new_row(ClipRecord(clip_id="c1", video_path="/v.mp4")), "work_dir": str(work)}])

    def out_of_memory(row):
        workdir.load_array(row["work_dir"], workdir.MASKS)
        raise ClipError("CUDA out of memory after 2 attempt(s)", kind="oom")

    for _ in range(2):  # the first try, then Ray's retry of the same call
        failed = run_stage(batch, "inpaint", out_of_memory).iloc[0]
        assert (failed.status, failed.error_type) == (FAILED, "oom"), failed.error
    assert workdir.has_array(work, workdir.MASKS)
    cfg = compose_config([f"output_dir={tmp_path}"])
    write = WriteClips(cfg, None, RunContext(ClipSettings.of(cfg, [WriteClips])))
    written = write(run_stage(batch, "inpaint", out_of_memory))
    assert written.iloc[0].error_type == "oom" and not work.exists()


class Killed(BaseException):
    """The process killed mid-write."""


def test_a_worker_killed_while_counting_its_attempt_leaves_the_count_readable(tmp_path, monkeypatch):
    """A clip sharing an actor with one that crashes it can be killed while it writes its attempts
    counter: the counter keeps its last whole value (an emptied file failed the clip with
    "invalid literal for int()" in a loaded run)."""
    from pathlib import Path

    workdir.count_worker_attempt(tmp_path, "inpaint", 2)

    def killed_mid_write(self, text, *args, **kwargs):
        self.write_bytes(b"")  # opened and truncated, then killed before the text is in
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(Path, "write_text", killed_mid_write)
        try:
            workdir.count_worker_attempt(tmp_path, "inpaint", 2)
        except Killed:
            pass
    assert workdir.worker_attempts(tmp_path, "inpaint") == 1
    workdir.count_worker_attempt(tmp_path, "inpaint", 2)
    assert workdir.worker_attempts(tmp_path, "inpaint") == 2


def test_a_death_while_clips_shared_the_worker_is_charged_to_none_of_them(tmp_path):
    """With two clips in an actor, one that crashes the process takes the other down too: the shared
    try is not charged, the tries alone are, and only those end the clip."""
    from vp_ray.errors import ClipError

    workdir.count_worker_attempt(tmp_path, "inpaint", 1, shared=True)   # died beside another clip
    workdir.count_worker_attempt(tmp_path, "inpaint", 1)                # alone: died
    workdir.count_worker_attempt(tmp_path, "inpaint", 1)                # alone: died again
    assert workdir.worker_attempts(tmp_path, "inpaint") == 3
    with pytest.raises(ClipError, match="died 2 time"):
        workdir.count_worker_attempt(tmp_path, "inpaint", 1)
    (tmp_path / "segment.attempts").write_text("2")  # a counter of one number: every try charged
    with pytest.raises(ClipError, match="died 2 time"):
        workdir.count_worker_attempt(tmp_path, "segment", 1)
