"""``python -m balloon_gym.traces summarize PATH``."""

import sys

from .cli import main

sys.exit(main())
