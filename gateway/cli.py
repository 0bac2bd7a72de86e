"""The `gateway` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.errors import GatewayError


def _serve(args: argparse.Namespace) -> int:
    import time

    import ray

    from gateway.app import deploy
    from gateway.config import load_config
    from gateway.runtime import init_ray, print_urls

    cfg = load_config(args.config)
    cfg.admin_token()
    init_ray(address=args.address)
    deploy(cfg, args.tracking_uri)
    print_urls(cfg)
    print("serving; press Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ray.shutdown()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.run import run_demo

    return run_demo(duration_s=args.duration, rate=args.rate, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=(
        "champion-gateway: champion/challenger model serving on Ray Serve with guarded "
        "rollouts and automated rollback"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start the gateway from a config file")
    p.add_argument("--config", default="configs/gateway.yaml", help="gateway YAML config")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: RAY_ADDRESS, else a new local instance)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: config, MLFLOW_TRACKING_URI, "
                        "else ./.gateway/mlflow.db)")
    p.set_defaults(func=_serve)
    d = sub.add_parser("demo", help="train, register, serve and drive traffic locally")
    d.add_argument("--duration", type=float, default=20.0, help="seconds of traffic")
    d.add_argument("--rate", type=float, default=40.0, help="requests per second")
    d.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1")
    d.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
