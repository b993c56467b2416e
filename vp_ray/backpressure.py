"""A bound on the clips prepared ahead of the model: the disk they fill is not Ray's to see.

Rows carry paths; a prepared clip's frames (about 80 MB at 480x720) wait as ``.npy`` files in
``<output_dir>/.work``. Ray Data's own backpressure counts object-store bytes, and a row is a few
hundred bytes, so without this the prepare tasks decode the whole dataset ahead of the GPUs
(measured: 150 of 150 clips prepared, 3 GB, when the first was written).

``PreparedClipsBound`` is a Ray Data backpressure policy (the interface its built-in policies
implement): the prepare operator may start a clip only while fewer than ``per_actor`` clips per
actor of the model stage are prepared and not yet taken by an actor (being prepared, queued,
being segmented, waiting for the model). The bound follows the model stage's live actor count,
so an autoscaling pool that grows onto new nodes gets more clips prepared for it.
"""

from __future__ import annotations

import logging

from ray.data._internal.execution.backpressure_policy import BackpressurePolicy
from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator

log = logging.getLogger(__name__)
CONFIG_KEY = "vp_ray.prepared_per_actor"
PREPARE_OP, MODEL_OPS = "MapBatches(PrepareClips)", ("MapBatches(InpaintClips)", "MapBatches(SegmentStage)")


class PreparedClipsBound(BackpressurePolicy):
    @property
    def name(self) -> str:
        return "PreparedClipsBound"

    def __init__(self, data_context, topology, resource_manager):
        super().__init__(data_context, topology, resource_manager)
        self.per_actor = data_context.get_config(CONFIG_KEY, None)
        ops = {op.name: op for op in topology}
        self.prepare = ops.get(PREPARE_OP)
        # The clips wait for the last model stage (inpainting; SAM2 in a mask-only run).
        self.model = next((ops[name] for name in MODEL_OPS if name in ops), None)
        self.between = self._chain(self.prepare, self.model) if self.prepare and self.model else []

    @staticmethod
    def _chain(first, last) -> list:
        """The operators from ``first`` up to (not including) ``last``, following the data."""
        chain, op = [], first
        while op is not last:
            chain.append(op)
            op = op.output_dependencies[0]
        return chain

    def waiting(self) -> int:
        """Clips prepared or being prepared that no model actor has taken yet (one row per block)."""
        count = sum(op.num_active_tasks() + op.internal_input_queue_num_blocks()
                    + op.internal_output_queue_num_blocks() + self._topology[op].output_queue.num_blocks
                    for op in self.between)
        # The prepare stage's own input queue holds unprepared rows: not counted. The model
        # stage's queue (bundles no actor has taken yet) is.
        return count - self.prepare.internal_input_queue_num_blocks() + self.model.internal_input_queue_num_blocks()

    def limit(self) -> int:
        actors = 1
        if isinstance(self.model, ActorPoolMapOperator):
            pool = self.model.get_autoscaling_actor_pools()[0]
            actors = max(1, pool.current_size())
        return self.per_actor * actors

    def can_add_input(self, op) -> bool:
        if op is not self.prepare or self.per_actor is None or self.model is None:
            return True
        return self.waiting() < self.limit()
