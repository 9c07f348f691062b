#!/usr/bin/env python
"""Train a RegNet: ``python recipes/train.py --model RegNetY600MF --dataset imagenet2012 --manual-dir DIR``.

A thin wrapper over :mod:`keras_regnet.commands.train` (same flags as ``keras-regnet train``); ``--help`` lists them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_regnet.commands.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
