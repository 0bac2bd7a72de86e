"""The `gateway` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from core.errors import GatewayError


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    import time

    import ray

    from gateway.app import deploy
    from gateway.config import load_config
    from gateway.runtime import init_ray, print_urls

    cfg = load_config(args.config)
    cfg.admin_token()
    init_ray(cfg, address=args.address)
    deploy(cfg, args.tracking_uri)
    print_urls(cfg)
    print("serving; press Ctrl-C to stop", flush=True)
    # A container runtime stops us with SIGTERM: leave like Ctrl-C (the app keeps running in
    # the cluster; this process only deployed it).
    signal.signal(signal.SIGTERM, _interrupt)
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


def _status(args: argparse.Namespace) -> int:
    import json

    from gateway.admin_client import AdminClient, format_status

    client = AdminClient.from_env(args.url, args.token_env)
    view = client.status()
    print(json.dumps(view, indent=2) if args.json else format_status(view))
    return 0


def _operate(args: argparse.Namespace) -> int:
    from gateway.admin_client import AdminClient, format_status

    client = AdminClient.from_env(args.url, args.token_env, actor=args.actor)
    print(format_status(client.operate(args.command, args.reason)))
    return 0


def _admin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL")
    p.add_argument("--token-env", default="GATEWAY_ADMIN_TOKEN",
                   help="environment variable holding the admin token")


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
    d.add_argument("--duration", type=float, default=60.0,
                   help="at most this many seconds of traffic per act")
    d.add_argument("--rate", type=float, default=50.0, help="requests per second")
    d.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1")
    d.set_defaults(func=_demo)
    st = sub.add_parser("status", help="show the live rollout: phase, weights, guards")
    _admin_args(st)
    st.add_argument("--json", action="store_true", help="print the full JSON view")
    st.set_defaults(func=_status)
    for op, text in (("promote", "promote the challenger now"),
                     ("rollback", "roll back now (or restore the previous champion)"),
                     ("pause", "hold the rollout at its current weights"),
                     ("resume", "resume a paused rollout")):
        o = sub.add_parser(op, help=text)
        _admin_args(o)
        o.add_argument("--reason", default="", help="recorded in the audit trail")
        o.add_argument("--actor", default=os.environ.get("USER", "cli"),
                       help="who is acting (recorded in the audit trail)")
        o.set_defaults(func=_operate)
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
