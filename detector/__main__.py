"""``python -m detector``: the same as the ``aim-detector`` command."""

import sys

from detector.cli import main

sys.exit(main())
