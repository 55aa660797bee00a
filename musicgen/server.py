"""Former home of the launcher, kept so that ``python -m musicgen.server`` and its imports keep working.

The launcher moved to ``musicgen.serving`` (with the watchdog); new code imports from there.
"""
import sys

from .serving import *  # noqa: F401,F403 - the same public names as before
from .serving import __all__  # noqa: F401
from .serving.launcher import main

if __name__ == "__main__":
    sys.exit(main())
