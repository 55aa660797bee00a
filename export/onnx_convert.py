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
    # otherwise try to pip-install its helpers at run time. `external_file` only takes effect past protobuf's
    # 2 GB (the 7B/6B LLM step graphs); smaller graphs stay one file (checked), the large case is untried here.
    paddle2onnx.export(
        str(paddle_dir / PADDLE_PROGRAM), str(paddle_dir / PADDLE_PARAMS), save_file=str(target),
        opset_version=ONNX_OPSET, auto_upgrade_opset=True, enable_onnx_checker=True, optimize_tool="None",
        external_file=str(target.with_name(target.name + ".data")),
    )
    return 0 if target.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
