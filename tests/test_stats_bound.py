"""The bound on Ray Data's per-block history in the driver: each operator keeps its last blocks' records."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from ray.data import DataContext
from ray.data._internal.execution.operators.task_pool_map_operator import TaskPoolMapOperator

from vp_ray.runtime.stats_bound import HISTORY_ATTRIBUTE, HISTORY_KEY, StatsHistoryBound


class MapOp(TaskPoolMapOperator):
    """A stand-in for a map operator: its name and its history (the records of the blocks it output)."""

    name = None

    def __init__(self, name, history=True):
        self.name = name
        if history:
            setattr(self, HISTORY_ATTRIBUTE, [])


def policy(ops, keep):
    ctx = DataContext()
    ctx.set_config(HISTORY_KEY, keep)
    return StatsHistoryBound(ctx, {op: None for op in ops}, None)


def test_each_operator_keeps_its_last_blocks_records_and_is_never_held_back():
    prepare, write = MapOp("MapBatches(prepare)"), MapOp("MapBatches(write)")
    bound = policy([prepare, write], keep=10)
    for block in range(1000):
        for op in (prepare, write):
            getattr(op, HISTORY_ATTRIBUTE).append(block)
            assert bound.can_add_input(op)
            assert len(getattr(op, HISTORY_ATTRIBUTE)) <= 20
    assert getattr(write, HISTORY_ATTRIBUTE)[-1] == 999 and getattr(write, HISTORY_ATTRIBUTE)[0] >= 979


def test_a_ray_data_without_the_history_it_bounds_is_refused_at_start():
    with pytest.raises(TypeError, match="keeps no list _output_blocks_stats"):
        policy([MapOp("MapBatches(prepare)", history=False)], keep=10)


@pytest.mark.slow
def test_a_real_pipeline_keeps_the_last_blocks_of_each_operator(ray_local):
    """Ray Data's own operators: 60 one-row blocks through two maps, 5 to 10 blocks' records kept each."""
    import ray
    from ray.data._internal.execution.backpressure_policy import (
        ENABLED_BACKPRESSURE_POLICIES,
        ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
    )

    ds = ray.data.from_pandas(pd.DataFrame({"x": range(60)})).repartition(target_num_rows_per_block=1)
    ds = ds.map_batches(lambda b: b, batch_size=1).map_batches(lambda b: b, batch_size=1, num_cpus=0.5)
    ds.context.set_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, [StatsHistoryBound, *ENABLED_BACKPRESSURE_POLICIES])
    ds.context.set_config(HISTORY_KEY, 5)
    assert sorted(row["x"] for row in ds.iter_rows()) == list(range(60))
    produced = [int(n) for n in re.findall(r"(\d+) blocks produced", ds.stats())]
    assert produced and all(n <= 10 for n in produced[1:]), ds.stats()  # after the first operator (the input)
