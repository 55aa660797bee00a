"""Child process: one component of one model family, its served config written and its graphs exported
(eager → Paddle inference → ONNX → parity).

Each component runs in its own process so that a converter crash takes down one job with a clear message,
not the whole export, so memory is returned between components, and so only this process imports paddle and
the family's models (the export's parent stays light beside the job's peak).
Usage: python -m export.job <family> <component> <weights_dir> <repository> <serving JSON (export.serving.Serving)>
"""
import importlib
import logging
import sys
from pathlib import Path

from export.core import ExportError, configure_logging
from export.serving import Serving, export_component_model


def main() -> int:
    configure_logging()
    family, name, weights, repository, serving = sys.argv[1:6]
    components = importlib.import_module(f"export.{family}.components").COMPONENTS
    try:
        export_component_model(components[name], Path(weights), Path(repository), Serving.from_json(serving))
    except ExportError as exc:
        logging.getLogger("export").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
