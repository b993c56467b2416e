"""The run's ledger keeps its rows on disk, not in the driver's memory: every record still ends as
exactly one manifest row or one failure row, nothing lost, nothing twice."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import compose_config

from vp_ray.clip import outputs
from vp_ray.clip.records import ClipRecord
from vp_ray.clip.rows import new_row
from vp_ray.runtime import manifest
from vp_ray.runtime.manifest import Ledger
from vp_ray.stages import ClipSettings
from vp_ray.stages.write import WriteClips


def row(clip_id, status="ok", **fields):
    return {**new_row(ClipRecord(clip_id=clip_id, video_path="/v.mp4")), "status": status,
            "output_dir": f"/out/clips/{clip_id}", **fields}


def failure(clip_id):
    return row(clip_id, "failed", failed_stage="prepare", error_type="decode", error=f"clip {clip_id!r}: boom")


@pytest.fixture
def spill_every_3(monkeypatch):
    monkeypatch.setattr(manifest, "SPILL_ROWS", 3)


def test_the_driver_holds_fewer_rows_than_a_part_and_every_row_lands_once(tmp_path, spill_every_3):
    ledger = Ledger(str(tmp_path))
    rows = [failure(f"f{i}") if i % 4 == 3 else row(f"c{i}", memory_plan="resident" if i == 9 else "")
            for i in range(10)]
    for taken, clip in enumerate(rows, 1):
        ledger.add(clip)
        assert len(ledger._held) < manifest.SPILL_ROWS  # the rest are in part files
        assert len(list((tmp_path / manifest.LEDGER_DIR).glob("part-*.parquet"))) == taken // 3
    assert (ledger.done_count, ledger.failed_count) == (8, 2)
    assert ledger.table().clip_id.tolist() == [r["clip_id"] for r in rows]  # in the order taken
    assert ledger.table("failed", columns=["clip_id", "error_type"]).values.tolist() == [["f3", "decode"],
                                                                                      ["f7", "decode"]]

    manifest_path, failures_path = ledger.write()
    table = pd.read_parquet(manifest_path)
    assert table.clip_id.tolist() == [r["clip_id"] for r in rows if r["status"] == "ok"]
    assert pd.read_parquet(failures_path).clip_id.tolist() == ["f3", "f7"]
    # One type per column, whatever the parts held: the plan is null in the first parts, text in the last.
    assert pq.read_schema(manifest_path).field("memory_plan").type == "string"
    assert table.memory_plan.isna().tolist() == [True] * 7 + [False] and table.memory_plan.iloc[-1] == "resident"
    assert table.result_path[0] == "/out/clips/c0/result.mp4" and ledger.duplicates() == []


def test_a_clip_taken_twice_is_named_even_once_its_first_row_is_on_disk(tmp_path, spill_every_3):
    ledger = Ledger(str(tmp_path))
    for clip_id in ("a", "b", "c", "d", "a"):
        ledger.add(row(clip_id))
    assert ledger.duplicates() == ["a"]


def test_committed_clips_whose_rows_are_already_on_disk_are_not_added_again(tmp_path, spill_every_3):
    """Ctrl-C: the clips committed but not yet taken join the manifest; those taken (and spilled) do not."""
    settings = ClipSettings.of(compose_config([f"output_dir={tmp_path}"]), [WriteClips])
    for clip_id in ("a", "b", "c", "d", "e"):
        clip = row(clip_id, num_frames=9, output_dir=str(outputs.clip_dir(tmp_path, clip_id)))
        outputs.commit_clip(tmp_path, clip_id, lambda folder: None,
                            lambda clip=clip: {**clip, "fingerprint": settings.fingerprint(clip)})
    ledger = Ledger(str(tmp_path))
    for clip_id in ("a", "b", "c", "d"):
        ledger.add(row(clip_id, output_dir=str(outputs.clip_dir(tmp_path, clip_id))))
    assert ledger.add_committed(settings) == 1
    assert sorted(pd.read_parquet(ledger.write()[0]).clip_id) == ["a", "b", "c", "d", "e"]
    assert ledger.duplicates() == []


def test_parts_left_by_a_killed_driver_are_dropped_by_the_next_run(tmp_path, spill_every_3):
    killed = Ledger(str(tmp_path))
    for clip_id in "abcdefg":
        killed.add(row(clip_id))  # 6 on disk in 2 parts; then the driver is killed: no manifest written
    resumed = Ledger(str(tmp_path))
    resumed.add(row("a", "done_before"))
    assert pd.read_parquet(resumed.write()[0]).clip_id.tolist() == ["a"]


def test_the_tables_are_written_whole_or_not_at_all_and_the_parts_go_when_discarded(tmp_path, spill_every_3):
    ledger = Ledger(str(tmp_path))
    for clip_id in ("a", "b", "c", "d"):
        ledger.add(row(clip_id))
    ledger.write()
    assert sorted(p.name for p in tmp_path.iterdir()) == [manifest.LEDGER_DIR, "failures.parquet", "manifest.parquet"]
    ledger.discard()
    assert not (tmp_path / manifest.LEDGER_DIR).exists()


def test_an_empty_run_writes_empty_tables_of_the_right_types(tmp_path):
    manifest_path, failures_path = Ledger(str(tmp_path)).write()
    assert pd.read_parquet(manifest_path).empty and pd.read_parquet(failures_path).empty
    assert pq.read_schema(manifest_path).field("num_frames").type == "int64"
