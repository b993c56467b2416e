"""Run vp-ray over a dataset: `python launch.py dataset=pexels model=videopainter`; score the finished
run with the same command and `task=evaluate` (README, "Evaluation").

Parses the Hydra config, streams the dataset through the Ray Data pipeline, and prints
a summary. `python launch.py --help` lists the config groups; `--cfg job` prints the config.

Exit status: 0 when at least one clip is done (or there was nothing to do), 1 when every clip
failed, 2 when the run was refused before it started (bad config, unreadable dataset, missing
weights, too few CPUs: one line on stderr says why, and no folder is left behind), 130 after Ctrl-C,
143 after SIGTERM (taken as Ctrl-C: the clips done so far are in the manifest, the report is written).
"""

from __future__ import annotations

import logging
import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from vp_ray.config import Task, load_config, register_configs
from vp_ray.errors import ConfigError
from vp_ray.runtime import refusal

register_configs()
log = logging.getLogger("vp_ray")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from vp_ray.runtime import graph
    from vp_ray.runtime.summary import format_summary

    start = time.perf_counter()
    try:
        typed = load_config(cfg)
        # The run's log folder is Hydra's run dir (launch.log is there); workers log beside it.
        log_dir = HydraConfig.get().runtime.output_dir
        if typed.task is Task.evaluate:
            from vp_ray.evaluation.runner import evaluate

            result = evaluate(typed, log_dir)
        else:
            result = graph.run(typed, log_dir)
    except MissingMandatoryValue as error:
        refuse(f"missing value: {error.full_key} (set it on the command line: {error.full_key}=...)")
    except OmegaConfBaseException as error:  # e.g. an interpolation that does not resolve
        refuse(f"invalid config: {refusal.one_line(error)}")
    except ConfigError as error:
        refuse(str(error))
    if result.dry_run:
        refusal.remove_run_dir(HydraConfig.get().runtime.output_dir)  # a dry run leaves nothing behind
        return
    if typed.task is Task.evaluate:
        from vp_ray.evaluation.runner import format_evaluation

        log.info("%s", format_evaluation(result, time.perf_counter() - start))
        if result.interrupted:
            sys.exit(128 + result.interrupted)
        if result.rows and not result.scored:
            sys.exit(1)  # no clip could be scored: every row says why
        return
    log.info("%s", format_summary(result, typed.output_dir, time.perf_counter() - start))
    result.ledger.discard()  # its rows are in manifest.parquet and failures.parquet now
    if result.interrupted:
        sys.exit(128 + result.interrupted)  # the signal's conventional code: 130 Ctrl-C, 143 SIGTERM
    if result.ledger.failed_count and not result.ledger.done_count:
        sys.exit(1)


def refuse(message: str) -> None:
    """Say why the run cannot start, and leave no folder behind for it."""
    refusal.remove_run_dir(HydraConfig.get().runtime.output_dir)
    refusal.refuse(message)


if __name__ == "__main__":
    refusal.run_hydra(main)
