#!/usr/bin/env python
"""Run the study: ``python run_study.py --profile default [--set key=value] [--only 03,04]``."""

import sys

from xldrift.runner import main

if __name__ == "__main__":
    sys.exit(main())
