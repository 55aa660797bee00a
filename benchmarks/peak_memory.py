"""Peak memory of a command and every process it starts, summed: what a host must have to run it.

    .venv/bin/python -m benchmarks.peak_memory -- .venv/bin/python -m export chatglm --from <folder> --out <repo>

Samples the summed RSS of the command's whole process tree (benchmarks.served.MemorySampler) and prints its peak.
`/usr/bin/time -v` reports the largest single process instead, which misses a parent holding memory while its
child works (the export starts one child per component, and paddle2onnx in a child of that).
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

from .served import MemorySampler

logger = logging.getLogger("benchmarks.peak_memory")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peak_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.time()
    child = subprocess.Popen(command)
    sampler = MemorySampler(child.pid, args.interval).start()
    child.wait()
    sampler.stop()
    logger.info("exit %d after %.0f s; peak RSS of the process tree %.2f GB (%d processes at that moment, %s)",
                child.returncode, time.time() - started, sampler.peak_bytes / 1e9, sampler.peak_processes,
                time.strftime("%H:%M:%S", time.localtime(sampler.peak_at)))
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
