"""Entry point of a worker process, started by the supervisor (docs/internals.md):

    python -m tureen.workers.main --index I --run-dir RUN_DIR --config JSON [--parent-pid P]

JSON is `Config.to_dict()`; the worker uses the rtc_* fields, log_level and log_format. It connects a
DEALER to ipc://RUN_DIR/worker-I.ipc, listens for pipes at RUN_DIR/pipe-I.ipc (a Unix socket), sends
`worker.ready` and serves until SIGTERM/SIGINT, `worker.close` or its parent's exit
(P, the supervisor's pid; by default the process that started it).
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson
from tureen.shared import logs
from tureen.shared.config import Config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tureen-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, required=True, help="worker index I")
    parser.add_argument("--run-dir", required=True, help="folder of the ipc:// sockets")
    parser.add_argument("--config", default="{}", help="Config.to_dict() as JSON")
    parser.add_argument(
        "--parent-pid", type=int, default=0, help="exit when this process is gone (default: ppid)"
    )
    return parser.parse_args(argv)


def load(raw: str) -> Config:
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("--config must be a JSON object")
    config = Config().updated(**data)
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load(args.config)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        print(f"tureen worker {args.index}: bad --config: {exc}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.run_dir):
        print(f"tureen worker {args.index}: run dir {args.run_dir} does not exist", file=sys.stderr)
        return 2
    try:
        logs.configure(config.log_level, process=f"worker[{args.index}]", fmt=config.log_format)
    except ValueError as exc:
        print(f"tureen worker {args.index}: {exc}", file=sys.stderr)
        return 2
    from tureen.workers import native, sched_slice

    if config.fanout == "native":
        try:
            native.make_fanout("native")  # what the forwarder will build: fail here, clearly
        except RuntimeError as exc:
            print(f"tureen worker {args.index}: {exc}", file=sys.stderr)
            return 2
    # Before any thread starts (ZeroMQ's I/O thread, io_uring's): they inherit the slice.
    sched_slice.apply(config.worker_slice_us, f"worker {args.index}")
    from tureen.workers.worker import run_worker

    return run_worker(args.index, args.run_dir, config, parent_pid=args.parent_pid or os.getppid())


if __name__ == "__main__":
    sys.exit(main())
