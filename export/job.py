"""Child process: export one component (eager → Paddle inference → ONNX → parity) of one model family.

Each component runs in its own process so that a converter crash takes down one job with a clear message,
not the whole export, and so memory is returned between components.
Usage: python -m export.job <family> <component> <weights_dir> <version_dir>
"""
import importlib
import logging
import sys
from pathlib import Path

from export.core import ExportError, configure_logging, export_component


def main() -> int:
    configure_logging()
    family, name, weights, version_dir = sys.argv[1:5]
    components = importlib.import_module(f"export.{family}.components").COMPONENTS
    try:
        export_component(components[name], Path(weights), Path(version_dir))
    except ExportError as exc:
        logging.getLogger("export").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
