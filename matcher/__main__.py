"""``python -m matcher`` is ``aim-matcher``."""

from matcher.cli import main

raise SystemExit(main())
