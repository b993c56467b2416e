"""Run vp-ray over a dataset: `python launch.py dataset=pexels model=videopainter`.

Parses the Hydra config, streams the dataset through the Ray Data pipeline, and prints
a summary. `python launch.py --help` lists the config groups; `--cfg job` prints the config.
"""

from __future__ import annotations

import logging
import sys
import time

import hydra
from omegaconf import DictConfig

from vp_ray.config import register_configs, to_plain_config
from vp_ray.errors import ConfigError

register_configs()
log = logging.getLogger("vp_ray")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from vp_ray import graph
    from vp_ray.summary import format_summary

    plain = to_plain_config(cfg)
    start = time.perf_counter()
    try:
        result = graph.run(plain)
    except ConfigError as error:
        log.error("%s", error)
        sys.exit(2)
    print(format_summary(result, plain["output_dir"], time.perf_counter() - start))
    if result.interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
