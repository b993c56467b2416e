"""A bound on the per-block history Ray Data keeps in the driver.

Ray Data (2.60) keeps, in every operator, the statistics of every block the operator has output
(``MapOperator._output_blocks_stats``: rows, bytes, timings, node, task), for ``Dataset.stats()`` once
the run ends. With one clip per block, every clip adds one such record per operator, and they were
most of the driver's growth per finished clip (bench/RESULTS.md, "The driver's memory per clip").
``StatsHistoryBound`` keeps each operator's last ``HISTORY_BLOCKS`` to ``2 x HISTORY_BLOCKS`` records,
so the run's ``ray_data_stats.txt`` covers each operator's last blocks only (its first line says so).

Ray Data has no setting for this and no hook between two blocks but its backpressure policies, which it
asks about every operator at each scheduling step: this is one that never holds anything back.
"""

from __future__ import annotations

from ray.data._internal.execution.backpressure_policy import BackpressurePolicy
from ray.data._internal.execution.operators.map_operator import MapOperator

HISTORY_KEY = "vp_ray.stats_history_blocks"
# Per operator. A cut every HISTORY_BLOCKS blocks keeps its cost small; a few hundred fill within the
# first minutes of a run, so that the driver's memory is flat from there (1,000 took 2,000 clips).
HISTORY_BLOCKS = 250
HISTORY_ATTRIBUTE = "_output_blocks_stats"


class StatsHistoryBound(BackpressurePolicy):
    @property
    def name(self) -> str:
        return "StatsHistoryBound"

    def __init__(self, data_context, topology, resource_manager):
        super().__init__(data_context, topology, resource_manager)
        self.keep = data_context.get_config(HISTORY_KEY, HISTORY_BLOCKS)
        for op in topology:
            if isinstance(op, MapOperator) and not isinstance(getattr(op, HISTORY_ATTRIBUTE, None), list):
                # A Ray Data that keeps it elsewhere would otherwise leave the driver growing without a word.
                raise TypeError(f"StatsHistoryBound: Ray Data's operator {op.name} keeps no list "
                                   f"{HISTORY_ATTRIBUTE} (a Ray Data version this code does not know)")

    def can_add_input(self, op) -> bool:
        history = getattr(op, HISTORY_ATTRIBUTE, None)
        if history is not None and len(history) > 2 * self.keep:
            del history[: len(history) - self.keep]
        return True


def stats_note(keep: int = HISTORY_BLOCKS) -> str:
    """The first line of ``ray_data_stats.txt``."""
    return (f"(Ray Data's statistics below cover each operator's last {keep} to {2 * keep} blocks: the driver "
            f"keeps no more; vp_ray/runtime/stats_bound.py)\n")
