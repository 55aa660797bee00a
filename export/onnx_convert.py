"""Child process: convert one Paddle inference graph folder to ONNX (paddle2onnx may abort() on bad ops).

Usage: python -m export.onnx_convert <paddle_dir> <target.onnx> [--external-above BYTES]

Graphs whose parameters file is above `--external-above` (default EXTERNAL_DATA_ABOVE) are converted without
their weights, which are then attached as ONNX external data (`<target>.data`) streamed from the Paddle file
(export/external_data.py says why paddle2onnx's own external-data option cannot be used); smaller ones are one
self-contained file, as paddle2onnx writes them.
"""
import argparse
import logging
import sys
from pathlib import Path

from export.core import ONNX_OPSET, configure_logging
from export.external_data import attach_external_weights
from musicgen.precision import external_data_file
from musicgen.runtime import PADDLE_PARAMS, PADDLE_PROGRAM

logger = logging.getLogger("export.onnx_convert")

# Protobuf caps a message at 2 GiB; 1 GiB leaves room for the graph itself and keeps loads streaming.
EXTERNAL_DATA_ABOVE = 1 << 30


def main(argv=None) -> int:
    import paddle2onnx

    parser = argparse.ArgumentParser(prog="python -m export.onnx_convert", description=__doc__)
    parser.add_argument("paddle_dir", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--external-above", type=int, default=EXTERNAL_DATA_ABOVE, metavar="BYTES",
                        help="parameters files larger than this go to <target>.data as ONNX external data")
    args = parser.parse_args(argv)
    configure_logging()
    program, params = args.paddle_dir / PADDLE_PROGRAM, args.paddle_dir / PADDLE_PARAMS
    external = params.stat().st_size > args.external_above
    args.target.with_name(external_data_file(args.target.name)).unlink(missing_ok=True)  # a previous export's weights
    # The graph optimiser is off: onnxruntime optimises at load time, and paddle2onnx's optimiser would
    # otherwise try to pip-install its helpers at run time. An empty parameters path converts the program
    # alone: every parameter stays a named input of its nodes, filled in by attach_external_weights.
    paddle2onnx.export(str(program), "" if external else str(params), save_file=str(args.target),
                       opset_version=ONNX_OPSET, auto_upgrade_opset=True, enable_onnx_checker=not external,
                       optimize_tool="None")
    if not args.target.exists() or args.target.stat().st_size == 0:
        logger.error("paddle2onnx wrote no graph to %s", args.target)
        return 1
    if external:
        attach_external_weights(args.target, program, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
