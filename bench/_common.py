"""What the bench's Python scripts share: the repository on ``sys.path``, refusals that say what is
missing in one line, the ``--out`` argument and JSON results.

A script runs as ``python bench/<script>.py`` from the repository root (``bench/`` is then first on
``sys.path``) and starts with::

    import _common  # the repository on sys.path
    _common.require_modules("torch", "diffusers", ...)   # before importing them

Raw results go under ``bench/runs/`` (ignored by git) unless ``--out`` says otherwise;
``bench/compact_run.py`` keeps what RESULTS.md cites of a run in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "bench" / "runs"
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

# Where a missing package comes from on the GPU machine, which reaches no package index.
CARRY_HINT = ("make them here with `bash bench/carry_site.sh`, carry .whl/ and unpack it as bench/README.md "
              "says (the shell scripts do it themselves)")


def refuse(message: str) -> None:
    """One line on stderr and exit status 2: the run did not start."""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def require_modules(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if "torch" in missing:   # the one package that is never carried
        refuse(f"needs torch: run with the Python that holds it ({sys.executable} does not)")
    if missing:
        refuse(f"missing Python packages: {', '.join(missing)}; {CARRY_HINT}")


def require_cuda(on_cpu: str = "") -> None:
    """Refuse without a CUDA GPU; ``on_cpu`` says what runs without one (e.g. "--tiny: ...")."""
    import torch

    if not torch.cuda.is_available():
        refuse("needs a CUDA GPU (torch sees none)" + (f"; {on_cpu}" if on_cpu else ""))


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose --help prints the script's docstring as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_out(arguments: argparse.ArgumentParser, name: str) -> None:
    """``--out``: the JSON report, by default ``bench/runs/<name>`` (ignored by git)."""
    arguments.add_argument("--out", default=str(RUNS / name),
                           help=f"JSON report path (default: bench/runs/{name}, ignored by git)")


def write_json(path: str | Path, results: Any) -> Path:
    """Write ``results`` as indented JSON, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))
    return path
