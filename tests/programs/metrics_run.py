"""Runs the batch job (the overrides given as JSON) in a Ray instance of its own, with the metrics
pushed every 0.5 s, then reads the node's Prometheus endpoint until the run's counters are there;
prints the vp_ray samples as JSON (tests/test_monitoring.py).

    python tests/programs/metrics_run.py PORT '["output_dir=...", ...]'
"""

import json
import sys
import time
import urllib.request
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import compose_config  # noqa: E402

from vp_ray.runtime import graph  # noqa: E402

port, overrides = int(sys.argv[1]), json.loads(sys.argv[2])
ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _metrics_export_port=port,
         _system_config={"metrics_report_interval_ms": 500})
graph.run(compose_config(overrides))
deadline, text = time.time() + 600, ""  # the counters come; the deadline only turns a hang into a failure
while time.time() < deadline:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    if 'outcome="failed"' in text and "vp_ray_stage_seconds_count" in text:
        break
    time.sleep(0.5)
print(json.dumps([line for line in text.splitlines() if "vp_ray" in line and not line.startswith("#")]))
