"""Command line entry point: ``python -m vox_runner --adapter NAME``."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import sys
from typing import NoReturn

from vox_protocol import DEFAULT_MAX_FRAME

from vox_runner.adapter import CACHE_ENV
from vox_runner.memory import cap_arenas

LOG_FORMAT = "%(asctime)s.%(msecs)03d vox-runner[%(process)d] %(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vox_runner",
        description="Host one Vox adapter: ControlMessage frames on stdin, RunnerMessage "
        "frames on stdout, logs on stderr.",
    )
    parser.add_argument(
        "--adapter",
        required=True,
        help="entry-point name in the 'vox.adapters' group (e.g. piper), or module:Class",
    )
    parser.add_argument(
        "--max-frame",
        type=int,
        default=DEFAULT_MAX_FRAME,
        metavar="BYTES",
        help="largest frame accepted or sent (default: %(default)s)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="inference requests run at once in this runner (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="where adapters keep what they derive from models between runs (optimized "
        "graphs); none by default",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("VOX_RUNNER_LOG_LEVEL", "INFO"),
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="stderr log level (default: $VOX_RUNNER_LOG_LEVEL or INFO)",
    )
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    # First, before any adapter or native library is imported: keep the real stdout for
    # frames only and point descriptor 1 (and sys.stdout) at stderr, so that anything a
    # library prints lands in the log instead of corrupting the frame stream.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    cap_arenas()  # before any thread exists
    # numpy's OpenBLAS starts a thread per core as it loads, and each spins ~0.1 s before it
    # sleeps, at import and after every product: 0.1-0.13 s of CPU per runner start on two
    # cores, beside the other runners' loads. The adapters compute in their engines' own pools
    # (onnxruntime, CTranslate2); numpy only multiplies small matrices (mel filters). A value
    # in the environment still wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    args = _parser().parse_args(argv)
    if args.parallel < 1:
        _parser().error("--parallel must be at least 1")
    if args.cache_dir:
        os.environ[CACHE_ENV] = args.cache_dir  # adapters read it through cache_dir()
    faulthandler.enable(file=sys.stderr)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level, format=LOG_FORMAT, datefmt="%H:%M:%S"
    )

    from vox_runner.host import EXIT_ERROR, serve

    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(
            serve(args.adapter, 0, proto_fd, max_frame=args.max_frame, parallel=args.parallel)
        )
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        logging.getLogger("vox_runner").exception("runner crashed")
        code = EXIT_ERROR
    logging.shutdown()
    sys.stderr.flush()
    # Exit without joining worker threads or closing the loop: a cancelled inference may
    # still be running in a thread, and a runner whose control plane is gone must not linger.
    os._exit(code)


if __name__ == "__main__":
    main()
