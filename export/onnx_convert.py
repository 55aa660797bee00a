"""Child process: convert one Paddle inference graph folder to ONNX (paddle2onnx may abort() on bad ops).

Usage: python -m export.onnx_convert <paddle_dir> <target.onnx>
"""
import sys
from pathlib import Path

from export.core import ONNX_OPSET
from musicgen.runtime import PADDLE_PARAMS, PADDLE_PROGRAM


def main() -> int:
    import paddle2onnx

    paddle_dir, target = Path(sys.argv[1]), Path(sys.argv[2])
    # The graph optimiser is off: onnxruntime optimises at load time, and paddle2onnx's optimiser would
    # otherwise try to pip-install its helpers at run time.
    paddle2onnx.export(
        str(paddle_dir / PADDLE_PROGRAM), str(paddle_dir / PADDLE_PARAMS), save_file=str(target),
        opset_version=ONNX_OPSET, auto_upgrade_opset=True, enable_onnx_checker=True, optimize_tool="None",
    )
    return 0 if target.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
