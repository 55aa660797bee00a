"""``python -m musicgen.serving``: serve the model repository until Ctrl-C or SIGTERM."""
import sys

from .launcher import main

sys.exit(main())
