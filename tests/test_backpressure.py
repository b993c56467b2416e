"""The bound on clips in .work: the policy's arithmetic on a stand-in topology, and a real run whose
model holds every clip at its gate (the state where an unbounded prepare stage would run ahead)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import compose_config
from ray.data import DataContext
from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator

from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.models import gate
from vp_ray.runtime import backpressure, graph
from vp_ray.runtime.backpressure import BOUNDED_KEY, PER_ACTOR_KEY, PREPARERS_KEY, WRITERS_KEY, WorkBound
from vp_ray.runtime.graph import bounded_operators, operator_name
from vp_ray.stages import Role
from vp_ray.stages.inpaint import InpaintClips
from vp_ray.stages.prepare import PrepareClips
from vp_ray.stages.read import ReadRecords
from vp_ray.stages.segment import SegmentStage
from vp_ray.stages.write import WriteClips


class Op:
    """A stand-in for a Ray Data operator: its name, neighbours and the blocks it holds."""

    def __init__(self, name, upstream=None):
        self.name = name
        self.input_dependencies = [upstream] if upstream else []
        self.output_dependencies = []
        if upstream:
            upstream.output_dependencies.append(self)
        self.active = self.inputs = self.outputs = self.output_queue = 0

    def num_active_tasks(self):
        return self.active

    def internal_input_queue_num_blocks(self):
        return self.inputs

    def internal_output_queue_num_blocks(self):
        return self.outputs


class ActorOp(Op, ActorPoolMapOperator):
    """A model stage: an actor pool of ``size`` actors (isinstance-checked by the policy)."""

    # Plain attributes here, not the operator's properties.
    name = input_dependencies = output_dependencies = None

    def __init__(self, name, upstream, size):
        Op.__init__(self, name, upstream)
        self.size = size

    def get_autoscaling_actor_pools(self):
        return [SimpleNamespace(current_size=lambda: self.size)]


def policy_context(stages, per_actor=2, writers=2, preparers=2):
    """Ray Data's context as ``vp_ray.runtime.graph`` configures it for a run of these stages."""
    ctx = DataContext()
    ctx.set_config(PER_ACTOR_KEY, per_actor)
    ctx.set_config(WRITERS_KEY, writers)
    ctx.set_config(PREPARERS_KEY, preparers)
    ctx.set_config(BOUNDED_KEY, bounded_operators(stages))
    return ctx


def pipeline(actors=1, per_actor=2, writers=2, preparers=2, segment=True, inpaint=True, stages=None):
    """input -> read -> normalize -> prepare -> [segment] -> [inpaint] -> write (one operator per
    stage, named as Ray Data names it), and its policy."""
    stages = stages or [ReadRecords, PrepareClips, *([SegmentStage] if segment else []),
                        *([InpaintClips] if inpaint else []), WriteClips]
    source = Op("Input")
    ops = [source, Op("ReadShards", source)]
    for stage in stages:
        kind = (lambda name, up: ActorOp(name, up, actors)) if stage.role is Role.inpaint else Op
        ops.append(kind(operator_name(stage), ops[-1]))
    topology = {op: SimpleNamespace(output_queue=SimpleNamespace(num_blocks=0)) for op in ops}
    policy = WorkBound(policy_context(stages, per_actor, writers, preparers), topology, None)
    by_name = {op.name.split("(")[-1].rstrip(")").lower(): op for op in ops}
    return policy, by_name, topology


def test_prepare_stops_at_per_actor_clips_per_actor_waiting_for_the_model():
    policy, op, topology = pipeline(actors=2, per_actor=2)
    op["prepare"].active = 1  # being prepared
    topology[op["prepare"]].output_queue.num_blocks = 1
    op["segment"].active = 1  # being segmented
    assert policy.can_add_input(op["prepare"]) and not backpressure.HOLDING["prepare"]
    op["inpaint"].inputs = 1  # queued at the model: 4 = 2 per actor x 2 actors
    assert not policy.can_add_input(op["prepare"]) and backpressure.HOLDING["prepare"]
    op["inpaint"].size = 3  # the pool grew: more clips may wait for it
    assert policy.can_add_input(op["prepare"])
    op["inpaint"].active = 6  # running in the model: not waiting for it
    assert policy.can_add_input(op["prepare"])


def test_the_model_stops_while_its_results_wait_for_the_writers():
    policy, op, topology = pipeline(actors=1, per_actor=2, writers=2)
    op["inpaint"].outputs = 1
    topology[op["inpaint"]].output_queue.num_blocks = 1
    op["write"].active = 1  # 3 results not written yet
    assert policy.can_add_input(op["inpaint"]) and not backpressure.HOLDING["model"]
    op["write"].inputs = 1  # 4 = 2 per actor x 1 actor + 2 writers
    assert not policy.can_add_input(op["inpaint"]) and backpressure.HOLDING["model"]
    op["write"].active = 0
    assert policy.can_add_input(op["inpaint"])


def test_the_stages_before_prepare_run_only_while_few_blocks_wait_for_it():
    policy, op, topology = pipeline(preparers=2, segment=False)
    topology[op["read"]].output_queue.num_blocks = 2
    op["prepare"].inputs = 1
    assert policy.can_add_input(op["read"])  # 3 < 2 x 2 preparers
    op["read"].active = 1
    assert not policy.can_add_input(op["read"])
    assert not policy.can_add_input(op["readshards"])  # also counts what waits after the checks
    assert policy.can_add_input(op["write"])  # the writers are never held


def test_a_pipeline_without_the_bounded_stages_is_refused_not_left_unbounded():
    """An operator named otherwise than the run's stages say (a stage run another way, Ray Data
    naming operators anew) or missing: the policy refuses to start instead of bounding nothing."""
    stages = [ReadRecords, PrepareClips, InpaintClips, WriteClips]
    source = Op("Input")
    prepare = Op("MapBatches(prepare)", Op("ReadShards", source))
    renamed = ActorOp("MapBatches(InpaintClips)", prepare, 1)
    ops = [source, prepare, renamed, Op("MapBatches(write)", renamed)]
    with pytest.raises(RuntimeError, match=r"no operator for the model stage's MapBatches\(inpaint\)"):
        WorkBound(policy_context(stages), {o: SimpleNamespace(output_queue=SimpleNamespace(num_blocks=0))
                                           for o in ops}, None)
    without_writer = ops[:3]
    with pytest.raises(RuntimeError, match=r"no operator for the writing stage's MapBatches\(write\)"):
        WorkBound(policy_context(stages), {o: SimpleNamespace(output_queue=SimpleNamespace(num_blocks=0))
                                           for o in without_writer}, None)
    unnamed = DataContext()
    unnamed.set_config(PER_ACTOR_KEY, 2)   # a bound asked for, but no stages named to it
    with pytest.raises(RuntimeError, match="feeding stage's"):
        WorkBound(unnamed, {o: SimpleNamespace(output_queue=SimpleNamespace(num_blocks=0)) for o in ops}, None)


def test_the_bound_finds_its_stages_by_their_roles_not_their_names():
    class Decode(PrepareClips):
        name = "decode"

    class Paint(InpaintClips):
        name = "paint"

    policy, op, _ = pipeline(actors=1, per_actor=2, stages=[ReadRecords, Decode, Paint, WriteClips])
    assert policy.prepare is op["decode"] and policy.model is op["paint"] and policy.write is op["write"]
    op["paint"].inputs = 2
    assert not policy.can_add_input(op["decode"]) and backpressure.HOLDING["prepare"]


def test_a_mask_only_run_of_mask_files_bounds_prepare_by_the_writers():
    """No model stage at all: prepare runs at most per_actor clips ahead of the writers."""
    policy, op, _ = pipeline(per_actor=2, writers=2, segment=False, inpaint=False)
    assert policy.model is None
    op["prepare"].active = 1
    assert policy.can_add_input(op["prepare"])
    op["write"].inputs = 1   # 2 prepared, not taken by a writer
    assert not policy.can_add_input(op["prepare"]) and backpressure.HOLDING["prepare"]
    op["write"].inputs, op["write"].active = 0, 2   # taken by the writers
    assert policy.can_add_input(op["prepare"]) and policy.can_add_input(op["write"])


@pytest.fixture(scope="module")
def click_and_file_clips(tmp_path_factory):
    """8 tiny clips: 4 with mask files, 4 with a click for SAM2 (4 videos)."""
    folder = tmp_path_factory.mktemp("many")
    rows = pd.read_csv(ensure_demo_dataset(folder, num_clips=4, num_frames=9, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(folder / p) for p in rows[column]]
    files = rows.assign(clip_id=[f"c{j}" for j in range(4)])
    clicks = files.drop(columns=["mask_kind", "mask_path", "mask_id"]).assign(
        clip_id=lambda d: "click_" + d.clip_id, points="[[30, 20, 1]]")
    pd.concat([files, clicks]).to_csv(folder / "many.csv", index=False)
    return folder / "many.csv"


@pytest.mark.slow
def test_a_model_holding_every_clip_never_lets_prepare_run_ahead(ray_local, tmp_path, click_and_file_clips):
    """The model (one actor; SAM2 on the CPU beside it; the session's Ray) holds every clip at its
    gate until the bound is seen holding the prepare stage back: without the bound, prepare would
    decode all 8 clips into .work. Then the gate opens and the run ends with every clip. The run is
    this process's, in a thread (the session Ray's workers serve it: a run of its own would start
    a driver and a job's worth of workers)."""
    out, gate_dir = tmp_path / "out", tmp_path / "gate"
    cfg = compose_config(
        [f"output_dir={out}", "dataset=csv", f"dataset.path={click_and_file_clips}",
         "model=sim", "model.seconds_per_frame=0", "model.hold_after_clips=0", f"model.gate_dir={gate_dir}",
         "model.height=48", "model.width=64", "model.num_gpus=0", "dilate_size=2", "sam2=tiny_random",
         "sam2.placement=cpu", "cluster.sample_every_s=0.1", "cluster.prepared_per_actor=2"])
    ended: list = []

    def run():
        try:
            ended.append(graph.run(cfg))
        except BaseException as error:  # seen by the test's thread
            ended.append(error)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    # 2 prepared and waiting for the one actor (being segmented, queued) + 2 taken by it (one held
    # at the gate, one waiting at it); after the gate: + 2 results being written.
    held_bound, bound = 2 + 2, 2 + 2 + 2
    deadline = time.monotonic() + 600  # a guard only
    try:
        while True:
            work = len(list((out / ".work").iterdir())) if (out / ".work").is_dir() else 0
            assert work <= held_bound, f"{work} clips in .work while the model holds every clip"
            samples = read_samples(out)
            if samples is not None and samples.prepare_held.any() and gate.held(gate_dir):
                break
            assert not ended, f"the run ended before the bound held prepare back: {ended}"
            assert time.monotonic() < deadline, "the bound never held prepare back"
            time.sleep(0.1)
    finally:
        gate.open_gate(gate_dir)  # a failed check must not leave the run held
        runner.join(timeout=600)
    assert ended and not isinstance(ended[0], BaseException), ended
    assert len(pd.read_parquet(out / "manifest.parquet")) == 8
    samples = pd.read_csv(out / "run_samples.csv")
    assert samples.work_clips.max() <= bound, list(samples.work_clips)


def read_samples(out):
    try:
        return pd.read_csv(out / "run_samples.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
