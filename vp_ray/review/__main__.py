"""Review a run in the browser: ``python -m vp_ray.review OUTPUT_DIR [--host HOST] [--port PORT]``.

Prints the app's URL and serves until Ctrl-C. It binds 127.0.0.1 unless told otherwise; on any other
address every request needs a token (``--token-file``, or a fresh one printed in the URL). Overrides as
for launch.py (``sam2=cpu``, ``sam2.checkpoint=...``) come after the run's own, which are read from its
newest log folder (README, "Review").
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import secrets
import socket
import sys
from pathlib import Path

from vp_ray.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vp_ray.review", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", help="the run's output folder (its manifest, failures and clips/)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other needs a token)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    parser.add_argument("--token-file", type=Path,
                        help="a file holding the token every request must carry (any bind); without it a "
                             "non-loopback bind makes a fresh token and prints it in the URL")
    parser.add_argument("overrides", nargs="*", help="config overrides after the run's own (sam2=cpu, ...)")
    return parser.parse_intermixed_args(argv)


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (its port is known before the server starts, also for port 0)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    return sock


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        import uvicorn

        from vp_ray.review.app import create_app, run_config
    except ImportError as error:
        print(f"the review app needs {error.name}: pip install 'vp-ray[review]'", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir).resolve()
    if not output_dir.is_dir():
        print(f"no output folder {output_dir}", file=sys.stderr)
        return 2
    token = None
    if args.token_file:
        token = args.token_file.read_text().strip()
        if len(token) < 16:
            print(f"the token in {args.token_file} is too short: use at least 16 characters", file=sys.stderr)
            return 2
    elif not is_loopback(args.host):
        token = secrets.token_urlsafe(24)
    try:
        cfg = run_config(output_dir, args.overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    app = create_app(output_dir, cfg, token=token)
    sock = listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown = args.host if is_loopback(args.host) else socket.gethostname()
    shown = f"[{shown}]" if ":" in shown else shown
    print(f"reviewing {output_dir} ({len(app.state.index.table)} clips)", flush=True)
    print(f"open http://{shown}:{port}/" + (f"?token={token}" if token else ""), flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
