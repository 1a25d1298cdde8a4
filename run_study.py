#!/usr/bin/env python
"""Run the study: ``python run_study.py --profile default [--set key=value] [--only 03,04]``."""

import sys

if __name__ == "__main__":
    try:
        from xldrift.study.runner import main

        sys.exit(main())
    except KeyboardInterrupt:  # before any notebook started (the runner handles it after)
        print("interrupted before any notebook ran; nothing was written", file=sys.stderr)
        sys.exit(130)
