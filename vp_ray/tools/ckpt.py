"""Checkpoint tree commands: ``python -m vp_ray.tools.ckpt {check,download,tiny} [--root DIR]``.

check     validate a tree, naming every missing file (exit status 1 if any)
download  fetch CogVideoX-5b-I2V and the VideoPainter branch from the Hugging Face hub
          (needs network access; set HF_ENDPOINT to use a mirror)
tiny      write tiny random weights in the same layout (tests, smoke runs); deterministic per --seed
"""

from __future__ import annotations

import argparse
import sys

from vp_ray.models import checkpoint

TINY_HELP = (
    "Write DIR/CogVideoX-5b-I2V/{model_index.json,scheduler,text_encoder,tokenizer,transformer,vae} "
    "and DIR/VideoPainter/checkpoints/branch with tiny random weights (64x96 frames, 49 frames per "
    "window; on one machine the same --seed writes the same bytes, another CPU may differ in the last bits "
    "of computed tables). Load them with model=tiny, or with any code "
    "that loads the real tree.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vp_ray.tools.ckpt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a checkpoint tree")
    download = commands.add_parser("download", help="fetch the real checkpoints from the hub")
    tiny = commands.add_parser("tiny", help="write tiny random weights in the real layout",
                               description=TINY_HELP)
    for sub, default in ((check, "ckpt"), (download, "ckpt"), (tiny, "ckpt/tiny")):
        sub.add_argument("--root", default=default, help=f"checkpoint root (default: {default})")
    tiny.add_argument("--seed", type=int, default=0, help="random seed of the weights (default: 0)")
    args = parser.parse_args(argv)

    base, branch = checkpoint.tree_paths(args.root)
    if args.command == "download":
        checkpoint.download(args.root)
    elif args.command == "tiny":
        from vp_ray.models.tiny import write_tiny_tree

        write_tiny_tree(base, branch, seed=args.seed)
    missing = checkpoint.missing_files(base, branch)
    for path in missing:
        print(f"missing: {path}")
    print(f"{args.root}: " + (f"incomplete, {len(missing)} file(s) missing" if missing else "complete"))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
