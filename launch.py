"""Run vp-ray over a dataset: `python launch.py dataset=pexels model=videopainter`.

Parses the Hydra config, streams the dataset through the Ray Data pipeline, and prints
a summary. `python launch.py --help` lists the config groups; `--cfg job` prints the config.

Exit status: 0 when at least one clip is done (or there was nothing to do), 1 when every clip
failed, 2 when the run was refused before it started (bad config, unreadable dataset, missing
weights), 130 after Ctrl-C.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from vp_ray.config import register_configs, to_plain_config
from vp_ray.errors import ConfigError

register_configs()
log = logging.getLogger("vp_ray")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from vp_ray import graph
    from vp_ray.summary import format_summary

    start = time.perf_counter()
    try:
        plain = to_plain_config(cfg)
        # The run's log folder is Hydra's run dir (launch.log is there); workers log beside it.
        plain["log_dir"] = HydraConfig.get().runtime.output_dir
        result = graph.run(plain)
    except MissingMandatoryValue as error:
        refuse(f"missing value: {error.full_key} (set it on the command line: {error.full_key}=...)")
    except ConfigError as error:
        refuse(str(error))
    if result.dry_run:
        remove_run_dir()  # a dry run leaves nothing behind
        return
    log.info("%s", format_summary(result, plain["output_dir"], time.perf_counter() - start))
    if result.interrupted:
        sys.exit(130)
    if result.ledger.failed and not result.ledger.done:
        sys.exit(1)


def refuse(message: str) -> None:
    """Say why the run cannot start, and leave no folder behind for it."""
    log.error("%s", message)
    remove_run_dir()
    sys.exit(2)


def remove_run_dir() -> None:
    """Hydra's run dir (logs/<date_time>/), and the logs/ and output folders above it if empty."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    logging.shutdown()
    for path in sorted(run_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    # The run dir and the logs/ and output folders above it, as far as they are now empty.
    for folder in (run_dir, run_dir.parent, run_dir.parent.parent):
        try:
            folder.rmdir()
        except OSError:
            break


if __name__ == "__main__":
    main()
