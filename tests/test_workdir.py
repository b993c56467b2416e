"""A clip's work folder across tries of its prepare stage (vp_ray/workdir.py)."""

import numpy as np

from vp_ray import workdir


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
