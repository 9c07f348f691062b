"""keras-regnet: RegNet and AnyNet for Keras 3 / TensorFlow, with the paper's design-space tooling."""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "keras_regnet", "__init__.py")) as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

INSTALL_REQUIRES = [
    "tensorflow>=2.16",
    "keras>=3.3",
    "numpy>=1.23",
    "h5py>=3.8",
    "safetensors>=0.4",
    "huggingface_hub>=0.20",
    "tensorflow-datasets>=4.9",
    "importlib_resources>=5.0",  # tfds's download_and_prepare imports it without declaring it
    "tf-keras-vis>=0.8.7",
    "matplotlib>=3.7",
    "scikit-learn>=1.2",  # ships the embedded digits data set of the design-space demo
    "scipy>=1.9",  # KS test and bootstrap intervals of design-space comparisons
    "tqdm>=4.60",
    "pyyaml>=6.0",
    "tensorboard>=2.16",  # training logs (keras.callbacks.TensorBoard needs the package)
]

EXTRAS = {
    "export": ["ai-edge-litert>=1.0", "tf2onnx>=1.16", "onnxruntime>=1.17"],
    "test": [
        "pytest>=7.4",
        "pytest-timeout>=2.2",
        "hypothesis>=6.80",
        "tf-keras>=2.16",  # the Keras 2 RegNet: migration parity and benchmark peer
        "jax[cpu]>=0.4.30",  # runs the builder under a second Keras backend
        "ai-edge-litert>=1.0",
        "tf2onnx>=1.16",
        "onnxruntime>=1.17",
    ],
}

setup(
    name="keras-regnet",
    version=VERSION,
    description="RegNet/AnyNet (Designing Network Design Spaces, CVPR 2020) for Keras 3 and TensorFlow",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["keras_regnet", "keras_regnet.*"]),
    package_data={"keras_regnet": ["data/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-regnet=keras_regnet.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
