"""A bound on the clips in ``<output_dir>/.work``: the disk they fill is not Ray's to see.

Rows carry paths; a clip's frames (about 135 MB at 480x720 with the masked video) wait as ``.npy`` files in
``<output_dir>/.work`` from the moment it is prepared until it is written. Ray Data's own
backpressure counts object-store bytes, and a row is a few hundred bytes, so without this the
prepare tasks decode the whole dataset ahead of the GPUs (measured: 150 of 150 clips prepared,
3 GB, when the first was written), and a model faster than the writers leaves its results
piling up behind it (measured: 60 clips waiting with 2 sim actors and 2 writers).

``WorkBound`` is a Ray Data backpressure policy (the interface its built-in policies implement)
with two gates around the model stage (inpainting; SAM2 in a mask-only run), both following the
model stage's live actor count, so an autoscaling pool that grows gets more clips fed to it:

* the prepare stage may start a clip only while fewer than ``per_actor`` clips per actor are
  prepared and not yet taken by an actor (being prepared, queued, being segmented, queued again);
* the model stage may take a clip only while fewer than ``per_actor`` clips per actor plus the
  writers' ``write_concurrency`` are done by the model and not yet written.

and, so that the rows ahead of the prepare stage stay few too (the driver keeps a reference to
every block in flight), each stage before it (read, split, check) runs only while fewer than
``2 x prepare_concurrency`` blocks wait between it and the prepare stage.

So at most ``per_actor x actors`` (before) + ``2 x actors`` (in the model: one on the GPU, the next
read and prepared beside it or waiting) + ``per_actor x actors + write_concurrency`` (after) clips are
in ``.work`` at any time. (A mask-only run of mask files has no model stage: the prepare stage may
then run ``per_actor`` clips ahead of the writers.)

The policy finds these stages by the operator names ``vp_ray.runtime.graph`` gives it (``Bounded``, from the
stages' declared roles), and refuses to start if the pipeline lacks one: a stage renamed or run
another way would otherwise leave ``.work`` unbounded without a word.

``HOLDING`` says, for the run in this process, whether the last decision held the prepare stage
back (the model is the bottleneck, as it should be) or the model (the writers are): the sampler
writes both into ``run_samples.csv``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ray.data._internal.execution.backpressure_policy import BackpressurePolicy
from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator

log = logging.getLogger(__name__)
PER_ACTOR_KEY, WRITERS_KEY, PREPARERS_KEY = ("vp_ray.prepared_per_actor", "vp_ray.write_concurrency",
                                              "vp_ray.prepare_concurrency")
BOUNDED_KEY = "vp_ray.bounded_operators"
HOLDING = {"prepare": False, "model": False}


@dataclass(frozen=True)
class Bounded:
    """The operators the bound holds, by name (``vp_ray.runtime.graph.bounded_operators``): the stage that
    feeds the model, the last model stage (None: a run without one) and the stage that writes."""

    feed: str | None
    model: str | None
    write: str | None


class WorkBound(BackpressurePolicy):
    @property
    def name(self) -> str:
        return "WorkBound"

    def __init__(self, data_context, topology, resource_manager):
        super().__init__(data_context, topology, resource_manager)
        self.per_actor = data_context.get_config(PER_ACTOR_KEY, None)
        self.writers = data_context.get_config(WRITERS_KEY, 1)
        self.preparers = data_context.get_config(PREPARERS_KEY, 1)
        self.prepare = self.model = self.write = None
        self.feeders = []
        HOLDING.update(prepare=False, model=False)
        if self.per_actor is None:  # not a vp-ray run (another dataset of this process): no bound
            return
        bounded = data_context.get_config(BOUNDED_KEY, None) or Bounded(None, None, None)
        ops = {op.name: op for op in topology}
        wanted = {"feeding": bounded.feed, "writing": bounded.write}
        if bounded.model is not None:
            wanted["model"] = bounded.model
        missing = [f"the {role} stage's {name or '(none named)'}" for role, name in wanted.items() if name not in ops]
        if missing:
            raise RuntimeError(f"WorkBound: the pipeline has no operator for {' or '.join(missing)}, so nothing "
                               f"would bound the clips in .work (operators: {sorted(ops)})")
        self.prepare, self.write = ops[bounded.feed], ops[bounded.write]
        self.model = ops[bounded.model] if bounded.model is not None else None
        self.feeders = self._upstream(self.prepare)

    @staticmethod
    def _upstream(op) -> list:
        """The operators that feed ``op`` (read, split, check), nearest first; not the input."""
        feeders = []
        while op.input_dependencies and op.input_dependencies[0].input_dependencies:
            op = op.input_dependencies[0]
            feeders.append(op)
        return feeders

    @staticmethod
    def _chain(first, last) -> list:
        """The operators from ``first`` up to (not including) ``last``, following the data."""
        chain, op = [], first
        while op is not last:
            chain.append(op)
            op = op.output_dependencies[0]
        return chain

    def _held(self, ops) -> int:
        """Clips (one row per block) running in or queued at or after each of ``ops``."""
        return sum(op.num_active_tasks() + op.internal_input_queue_num_blocks()
                   + op.internal_output_queue_num_blocks() + self._topology[op].output_queue.num_blocks
                   for op in ops)

    def waiting_between(self, first, last) -> int:
        """Blocks taken by ``first`` (running or done) that ``last`` has not started on: waiting
        in the queues between them, including ``last``'s own input queue."""
        return (self._held(self._chain(first, last)) - first.internal_input_queue_num_blocks()
                + last.internal_input_queue_num_blocks())

    def prepared_waiting(self) -> int:
        """Clips prepared or being prepared that no model actor (no writer, in a run without a model) has taken yet."""
        return self.waiting_between(self.prepare, self.model or self.write)

    def finished_waiting(self) -> int:
        """Clips the model is done with that are not written yet (being written included)."""
        model, write = self.model, self.write
        return (model.internal_output_queue_num_blocks() + self._topology[model].output_queue.num_blocks
                + self._held(self._chain(model, write)[1:])
                + write.num_active_tasks() + write.internal_input_queue_num_blocks())

    def actors(self) -> int:
        if isinstance(self.model, ActorPoolMapOperator):
            return max(1, self.model.get_autoscaling_actor_pools()[0].current_size())
        return 1

    def can_add_input(self, op) -> bool:
        if self.per_actor is None:
            return True
        if op in self.feeders:
            return self.waiting_between(op, self.prepare) < 2 * self.preparers
        if op is self.prepare:
            HOLDING["prepare"] = self.prepared_waiting() >= self.per_actor * self.actors()
            return not HOLDING["prepare"]
        if self.model is not None and op is self.model:
            HOLDING["model"] = self.finished_waiting() >= self.per_actor * self.actors() + self.writers
            return not HOLDING["model"]
        return True
