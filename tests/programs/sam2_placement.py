"""Places SAM2 actors and then inpainting actors on 4 logical GPUs as vp_ray.runtime.sam2_placement plans
them (and, for contrast, as the quarter-GPU trap would); prints what was placed as JSON
(tests/test_segment.py)."""

import json

import ray

from vp_ray.config import PlacementMode, Sam2Config
from vp_ray.runtime.graph import start_local  # ray.init, again if Ray's start-up wait runs out
from vp_ray.runtime.sam2_placement import plan_placement

GPUS = 4
start_local({"num_cpus": 2, "num_gpus": GPUS, "include_dashboard": False, "log_to_driver": False})


@ray.remote(num_cpus=0)
class Probe:
    def gpus(self):
        return ray.get_gpu_ids()


def place(sam2_count, sam2_gpus, inpaint_gpus, inpaint_count, can_place):
    """Place the SAM2 pool first (the worst case), then the inpainting actors; wait for the
    ``can_place`` of them that fit (as many as fit: nothing else holds the GPUs)."""
    sam2 = [Probe.options(num_gpus=sam2_gpus).remote() for _ in range(sam2_count)]
    ray.get([a.gpus.remote() for a in sam2])
    inpaint = [Probe.options(num_gpus=inpaint_gpus).remote() for _ in range(inpaint_count)]
    calls = [a.gpus.remote() for a in inpaint]
    ready, rest = ray.wait(calls, num_returns=can_place, timeout=300)  # a guard: they fit at once
    # Everything that fits is placed: one left over has no GPU to go to, whenever we look.
    left, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
    placed = [ray.get(r) for r in ready + left]
    for actor in sam2 + inpaint:
        ray.kill(actor)
    return {"wanted": inpaint_count, "placed": placed}


p = plan_placement(Sam2Config(placement=PlacementMode.auto, pool_size=3, gpu_fraction=0.1), 1, GPUS)
wanted = int(p.inpaint_gpus_available)
result = {"auto": place(3, p.sam2_num_gpus, p.inpaint_num_gpus, wanted, wanted)}
p = plan_placement(Sam2Config(placement=PlacementMode.dedicated, pool_size=1), 1, GPUS)
wanted = int(p.inpaint_gpus_available)
result["dedicated"] = place(1, p.sam2_num_gpus, p.inpaint_num_gpus, wanted, wanted)
result["quarter_gpus"] = place(3, 0.25, 0.75, GPUS, GPUS - 1)  # the trap, for contrast
print(json.dumps(result))
