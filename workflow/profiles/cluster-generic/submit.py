#!/usr/bin/env python3
"""Submit command of the cluster-generic profile; the logic is in scheduler.py next to this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scheduler import submit_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(submit_main(sys.argv[1:]))
