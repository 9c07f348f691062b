"""Export a RegNet for TF Serving / TFLite / ONNX: the same as ``keras-regnet export`` (see its --help).

    python recipes/export.py RegNetY600MF --weights imagenet --onnx
    python recipes/export.py path/to/trained.keras --representative path/to/images --min-agreement 0.95
"""

import sys

from keras_regnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
