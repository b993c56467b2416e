"""Checkpoint trees: the tiny writer, validation naming every missing file, the `ckpt` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from vp_ray.config import Dtype, VideoPainterModelConfig
from vp_ray.errors import ConfigError
from vp_ray.models.checkpoint import BASE_DIR, BRANCH_DIR, missing_files, require_complete, tree_paths
from vp_ray.models.tiny import ensure_tiny_tree
from vp_ray.tools.ckpt import main as ckpt_main


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    return ensure_tiny_tree(tmp_path_factory.getbasetemp() / "tiny-ckpt")


@pytest.fixture
def broken_root(tiny_tree, tmp_path):
    """A copy of the tiny tree with three files gone, in three different components."""
    base, branch = tiny_tree
    root = tmp_path / "ckpt"
    shutil.copytree(base, root / BASE_DIR)
    shutil.copytree(branch, root / BRANCH_DIR)
    for lost in (f"{BASE_DIR}/transformer/diffusion_pytorch_model.safetensors",
                 f"{BASE_DIR}/tokenizer/spiece.model", f"{BRANCH_DIR}/config.json"):
        (root / lost).unlink()
    return root


def test_tiny_tree_has_the_real_layout(tiny_tree):
    base, branch = tiny_tree
    assert missing_files(base, branch) == []
    assert sorted(p.name for p in base.iterdir()) == [
        "model_index.json", "scheduler", "text_encoder", "tokenizer", "transformer", "vae"]
    assert json.loads((branch / "config.json").read_text())["_class_name"] == "CogvideoXBranchModel"


def test_incomplete_tree_is_rejected_naming_every_missing_file(broken_root):
    with pytest.raises(ConfigError) as error:
        require_complete(*tree_paths(broken_root))
    message = str(error.value)
    assert "3 file(s) missing" in message
    for name in ("transformer/diffusion_pytorch_model.safetensors", "tokenizer/spiece.model",
                 "branch/config.json"):
        assert name in message


def test_model_load_fails_before_reading_weights_on_an_incomplete_tree(broken_root):
    from vp_ray.models.videopainter import VideoPainter

    base, branch = tree_paths(broken_root)
    with pytest.raises(ConfigError, match="3 file\\(s\\) missing"):
        VideoPainter(VideoPainterModelConfig(name="videopainter", base_model_path=str(base),
                                                      branch_path=str(branch), dtype=Dtype.float32))


def test_missing_shards_of_sharded_weights_are_named(tiny_tree, tmp_path):
    base, branch = tiny_tree
    shutil.copytree(base, tmp_path / BASE_DIR)
    shutil.copytree(branch, tmp_path / BRANCH_DIR)
    vae = tmp_path / BASE_DIR / "vae"
    first, second = "vae-00001-of-00002.safetensors", "vae-00002-of-00002.safetensors"
    (vae / "diffusion_pytorch_model.safetensors").rename(vae / first)
    (vae / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": first, "b": second}}))
    assert missing_files(*tree_paths(tmp_path)) == [vae / second]


def test_check_command_on_good_and_broken_trees(tiny_tree, broken_root, capsys):
    good_root = tiny_tree[0].parent
    done = subprocess.run([sys.executable, "-m", "vp_ray.tools.ckpt", "check", "--root", str(good_root)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "complete" in done.stdout

    assert ckpt_main(["check", "--root", str(broken_root)]) == 1
    printed = capsys.readouterr().out
    assert printed.count("missing: ") == 3 and "incomplete, 3 file(s) missing" in printed


def test_tiny_command_is_deterministic_per_seed(tiny_tree, tmp_path):
    assert ckpt_main(["tiny", "--root", str(tmp_path), "--seed", "0"]) == 0
    base, branch = tiny_tree
    written_base, written_branch = tree_paths(tmp_path)
    for folder, copy in ((base, written_base), (branch, written_branch)):
        files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
        assert all((folder / f).read_bytes() == (copy / f).read_bytes() for f in files)
