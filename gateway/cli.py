"""The `gateway` command.

Every command but `serve` and `demo` takes `--json` (machine output on stdout). Errors are
one line on stderr, `error: ...`, with exit status 2 (never a traceback, unless
GATEWAY_DEBUG is set); Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from core.errors import GatewayError

DEBUG_ENV = "GATEWAY_DEBUG"


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


def _print_json(data: Any) -> None:
    import json

    print(json.dumps(data, indent=2, sort_keys=True))


def _status(args: argparse.Namespace) -> int:
    from gateway.admin_client import AdminClient, format_status

    client = AdminClient.from_env(args.url, args.token_env)
    view = client.status()
    if args.json:
        _print_json(view)
    else:
        print(format_status(view))
    return 0


def _operate(args: argparse.Namespace) -> int:
    from gateway.admin_client import AdminClient, format_status

    client = AdminClient.from_env(args.url, args.token_env, actor=args.actor)
    view = client.operate(args.command, args.reason)
    if args.json:
        _print_json(view)
    else:
        print(format_status(view))
    return 0


def _report(args: argparse.Namespace) -> int:
    from gateway.admin_client import AdminClient

    client = AdminClient(args.url, os.environ.get(args.token_env), timeout_s=60.0)
    try:
        page = client.report(args.rollout)
    finally:
        client.close()
    out = Path(args.output)
    out.write_text(page, encoding="utf-8")
    if args.json:
        _print_json({"rollout": args.rollout, "path": str(out.resolve()),
                     "bytes": out.stat().st_size})
    else:
        print(f"report written to {out} ({out.stat().st_size // 1024} KiB): open it in a "
              "browser")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from gateway.admin_client import AdminClient
    from gateway.watch import watch

    # A short per-request timeout: a hung gateway shows as unreachable, not as a frozen view.
    client = AdminClient(args.url, os.environ.get(args.token_env),
                         timeout_s=max(2.0, min(10.0, args.interval * 5)))
    try:
        return watch(client, url=args.url, interval_s=args.interval, timeout_s=args.timeout,
                     once=args.once, json_lines=args.json)
    finally:
        client.close()


def _rollout_start(args: argparse.Namespace) -> int:
    from gateway.rollout_alias import cli_tracking_uri, describe_start, start_rollout

    result = start_rollout(args.model, args.version, cli_tracking_uri(args.tracking_uri),
                           actor=args.actor, reason=args.reason)
    if args.json:
        _print_json(result)
    else:
        print(describe_start(result))
    return 0


def _rollout_abort(args: argparse.Namespace) -> int:
    from gateway.rollout_alias import abort_rollout, cli_tracking_uri, describe_abort

    result = abort_rollout(args.model, cli_tracking_uri(args.tracking_uri), actor=args.actor,
                           reason=args.reason)
    if args.json:
        _print_json(result)
    else:
        print(describe_abort(result))
    return 0


def _history(args: argparse.Namespace) -> int:
    from gateway.history import history_table, read_history
    from gateway.rollout_alias import cli_tracking_uri

    records = read_history(cli_tracking_uri(args.tracking_uri), args.model, args.limit,
                           args.experiment)
    if args.json:
        _print_json([r.to_dict() for r in records])
    elif not records:
        print("no rollouts recorded" + (f" for {args.model}" if args.model else ""))
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # piped: whole rows (a terminal's table fits its width)
            console = Console(width=400)
        console.print(history_table(records))
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2 (like every other error of the CLI)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _admin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL")
    p.add_argument("--token-env", default="GATEWAY_ADMIN_TOKEN",
                   help="environment variable holding the admin token")


def _json_arg(p: argparse.ArgumentParser, text: str = "machine output: JSON") -> None:
    p.add_argument("--json", action="store_true", help=text)


def _actor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", default="", help="recorded in the audit trail")
    p.add_argument("--actor", default=os.environ.get("USER", "cli"),
                   help="who is acting (recorded in the audit trail)")


def _tracking_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else "
                        "./.gateway/mlflow.db, as `gateway serve`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway", description=(
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
    st = sub.add_parser("status", help="show the live rollout: phase, weights, the step's "
                                       "progress, each guard's evidence")
    _admin_args(st)
    _json_arg(st, "print the full JSON view")
    st.set_defaults(func=_status)
    w = sub.add_parser("watch", help="follow the running (else the next) rollout live until "
                                     "it ends")
    _admin_args(w)
    w.add_argument("--interval", type=_positive(float), default=1.0,
                   help="seconds between two looks (default 1)")
    w.add_argument("--timeout", type=_positive(float), default=None,
                   help="give up (exit 2) after the gateway has not answered for this many "
                        "seconds (default: keep retrying)")
    w.add_argument("--once", action="store_true", help="print one frame and exit")
    _json_arg(w, "one JSON status per line, each time it changes; the last line says how "
                 "the rollout ended")
    w.set_defaults(func=_watch)
    for op, text in (("promote", "promote the challenger now"),
                     ("rollback", "roll back now (or restore the previous champion)"),
                     ("pause", "hold the rollout at its current weights"),
                     ("resume", "resume a paused rollout")):
        o = sub.add_parser(op, help=text)
        _admin_args(o)
        _actor_args(o)
        _json_arg(o, "print the JSON view after the operation")
        o.set_defaults(func=_operate)
    ro = sub.add_parser("rollout", help="start or abort a rollout through the registry's "
                                        "challenger alias")
    ro_sub = ro.add_subparsers(dest="rollout_command", required=True)
    start = ro_sub.add_parser("start", help="point the challenger alias at VERSION: the "
                                            "gateway rolls it out")
    start.add_argument("model", help="registered model name")
    start.add_argument("version", help="model version to roll out")
    _actor_args(start)
    _tracking_arg(start)
    _json_arg(start)
    start.set_defaults(func=_rollout_start)
    abort = ro_sub.add_parser("abort", help="delete the challenger alias: the gateway aborts "
                                            "the rollout")
    abort.add_argument("model", help="registered model name")
    _actor_args(abort)
    _tracking_arg(abort)
    _json_arg(abort)
    abort.set_defaults(func=_rollout_abort)
    rp = sub.add_parser("report", help="write a rollout's report (one HTML page with its "
                        "plots) from the admin API")
    _admin_args(rp)
    rp.add_argument("--rollout", default=None,
                    help="rollout id (default: the current or last rollout)")
    rp.add_argument("-o", "--output", default="rollout-report.html", help="file to write")
    _json_arg(rp)
    rp.set_defaults(func=_report)
    h = sub.add_parser("history", help="past rollouts, newest first, from their MLflow runs")
    h.add_argument("model", nargs="?", default=None, help="only this registered model")
    h.add_argument("--limit", type=_positive(int), default=20, help="at most this many")
    h.add_argument("--experiment", default="champion-gateway-rollouts",
                   help="MLflow experiment of the rollout runs (supervisor.rollout_experiment)")
    _tracking_arg(h)
    _json_arg(h)
    h.set_defaults(func=_history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except GatewayError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug or an unforeseen failure: still one line, unless asked
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {type(exc).__name__}: {_one_line(exc)} (set {DEBUG_ENV}=1 for the "
              "traceback)", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
