"""A run on three fake nodes in one machine (ray.cluster_utils): a node is lost while one of its
actors holds a clip, a node is added, and the gate opens once an actor there holds a clip; prints a
REPORT line of JSON (tests/test_scale.py).

    python tests/programs/node_loss.py CLIPS_CSV OUT_DIR GATE_DIR
"""

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from vp_ray.config import compose, load_config
from vp_ray.models import gate
from vp_ray.runtime import graph

csv, out, gate_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
# No dashboard: nothing here reads it, and its head and agents cost a loaded 2-core machine CPU seconds.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "num_gpus": 0, "include_dashboard": False})
nodes = [cluster.add_node(num_cpus=3, num_gpus=1) for _ in range(2)]
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
cfg = load_config(compose([f"output_dir={out}", "dataset=csv", f"dataset.path={csv}", "model=sim",
                           "model.seconds_per_frame=0", "model.height=48", "model.width=64",
                           "model.hold_after_clips=2", f"model.gate_dir={gate_dir}",
                           "dilate_size=2", "cluster=multinode", "cluster.include_dashboard=false",
                           "cluster.prepare_concurrency=2", "cluster.write_concurrency=2"]))
events, results = {}, []


def wait_until(condition, what, timeout=600):
    deadline = time.monotonic() + timeout
    while not condition():
        if not runner.is_alive() or time.monotonic() > deadline:
            raise SystemExit(f"never reached: {what}")
        time.sleep(0.1)


def held_on(node):
    return [h for h in gate.held(gate_dir) if h["node"] == node.node_id]


# The run in a thread: Ray adds nodes only from the main thread (it sets signal handlers).
runner = threading.Thread(target=lambda: results.append(graph.run(cfg)))
runner.start()
wait_until(lambda: len(list((out / "clips").glob("c*"))) == 2 and held_on(nodes[0]),
           "2 clips written and a clip held by the actor on the node to be lost")
events["removed"] = nodes[0].node_id[:8]
cluster.remove_node(nodes[0], allow_graceful=False)  # lost mid-run, with its actors and tasks
added = cluster.add_node(num_cpus=3, num_gpus=1)
events["added"] = added.node_id[:8]
wait_until(lambda: held_on(added), "a clip held by an actor on the added node (the pool grew onto it)")
gate.open_gate(gate_dir)
runner.join()
result = results[0]
done, failed = result.ledger.table("done"), result.ledger.table("failed")
print("REPORT", json.dumps({**events, "done": done.clip_id.tolist(),
                  "failed": failed.clip_id.tolist(),
                  "duplicates": result.ledger.duplicates(),
                  "errors": failed.error.tolist(),
                  "workers": sorted(set(done.inpaint_worker))}))
ray.shutdown()
cluster.shutdown()
