"""A run that cannot start says why in one line on stderr, exits with code 2 and leaves no folder behind.

Hydra composes the config before ``launch.py``'s ``main`` runs and reports its own errors (an unknown
key, a value outside an Enum, a config group option that does not exist) in several lines with a hint
about ``HYDRA_FULL_ERROR`` and exit code 1. ``run_hydra`` has Hydra raise them instead, as
``HYDRA_FULL_ERROR=1`` does, and turns them into one line and exit code 2; a user who sets
``HYDRA_FULL_ERROR=1`` still gets the whole trace. (The variable stays set for the process: an error
in the run itself, a bug, shows Python's whole trace rather than Hydra's shortened one.)

Hydra also makes the run dir (``<output_dir>/logs/<date_time>``) before ``main`` runs. ``NoteRunDir``, a
Hydra callback (``conf/config.yaml``), notes which of its folders exist before that, so that
``remove_run_dir`` removes what this invocation made and nothing an earlier run left.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

REFUSED = 2
FULL_ERROR = "HYDRA_FULL_ERROR"

_kept: Path | None = None  # the deepest folder of the run dir's path that existed before Hydra ran


def refuse(message: str) -> NoReturn:
    """One line on stderr, exit code 2."""
    print(" ".join(message.split()), file=sys.stderr)
    sys.exit(REFUSED)


def run_hydra(main: Callable[[], Any]) -> None:
    """Run a ``hydra.main`` function; a config Hydra cannot compose is refused in one line."""
    debugging = os.environ.get(FULL_ERROR) == "1"
    os.environ[FULL_ERROR] = "1"  # Hydra raises its errors instead of printing them and exiting with 1
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        if debugging:
            raise
        refuse(f"invalid config: {one_line(error)}")


def one_line(error: BaseException) -> str:
    """Hydra's composition error (and OmegaConf's cause) as one line that names the key and the problem."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, option = error.missing_cfg_file.rpartition("/")
        options = [name for name in error.options if not name.startswith("base_")]  # schemas, not options
        return f"{group}={option}: no such option (one of {', '.join(sorted(options))})"
    if isinstance(error, OverrideParseException):
        return f"cannot parse {error.override!r}: {error.message.strip().splitlines()[0]}"
    parts = [str(error).strip().splitlines()[0].rstrip(".")]
    if isinstance(error.__cause__, OmegaConfBaseException):
        parts.append(str(error.__cause__).strip().splitlines()[0])
    return ": ".join(parts)


class NoteRunDir(Callback):
    """Notes, before Hydra makes the run dir, the deepest of its folders that already exists."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _kept
        try:
            HydraConfig.instance().set_config(config)  # for ${hydra:...} values (Hydra sets it next)
            folder = Path(str(config.hydra.run.dir)).absolute()
        except (HydraException, OmegaConfBaseException):  # unknown: remove_run_dir falls back
            return
        while not folder.is_dir():
            folder = folder.parent
        _kept = folder


def remove_run_dir(run_dir: str | os.PathLike) -> None:
    """The run dir and the folders above it that this invocation made (with ``NoteRunDir``; else as
    far as the output dir), as far as they are empty."""
    run_dir = Path(run_dir).absolute()
    logging.shutdown()  # launch.log, inside it, is open
    shutil.rmtree(run_dir, ignore_errors=True)
    made = [p for p in run_dir.parents if _kept in p.parents] if _kept in run_dir.parents \
        else [run_dir.parent, run_dir.parent.parent]
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty: an earlier run's
            break
