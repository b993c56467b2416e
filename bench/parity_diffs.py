"""Max abs differences between our pipeline and the parity arrays, per case and quantity.

    python bench/parity_diffs.py [--default-numerics]

Machine: CPUs only; the project's packages.

Runs our side as tests/test_parity.py does (a subprocess under its PINNED_ENV), or with this
machine's own kernels (``--default-numerics``), and prints one line per quantity. Used to fill the
agreement table of tests/data/parity/README.md on each machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import _common
import numpy as np

sys.path.insert(0, str(_common.REPO / "tests"))
import test_parity  # noqa: E402


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--default-numerics", action="store_true",
                        help="run without PINNED_ENV (the machine's own kernels and threads)")
    args = parser.parse_args()
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    if not args.default_numerics:
        env.update(test_parity.PINNED_ENV)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"cpu: {cpu}; numerics: {'default' if args.default_numerics else 'pinned'}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        cases = {**{case: test_parity.QUANTITIES for case in test_parity.CASES}, **test_parity.LONG_CASES}
        subprocess.run([sys.executable, test_parity.__file__, tmp], env=env, check=True, capture_output=True)
        for case, quantities in cases.items():
            ours, ref = np.load(Path(tmp) / f"{case}.npz"), np.load(test_parity.DATA / f"{case}.npz")
            for key in quantities:
                diff = float(np.abs(ours[key].astype(np.float64) - ref[key].astype(np.float64)).max())
                worst = max(worst, diff)
                print(f"{case:10s} {key:24s} {diff:.3g}")
    print(f"max over all: {worst:.3g} (tolerance {test_parity.TOLERANCE})")


if __name__ == "__main__":
    main()
