"""Quiet output: the settings that keep third-party start-up and progress chatter off the user's terminal.

TensorFlow prints absl/oneDNN/CUDA lines from C++ when it is imported (before any log level applies), the TFLite
converter prints its MLIR passes and quantization settings, LiteRT prints "INFO: Created TensorFlow Lite XNNPACK
delegate for CPU." once per process. None of it is about the user's data. This module holds:

- :func:`debug` / :func:`set_debug`: one switch, ``--debug`` on the command line or ``KERAS_REGNET_DEBUG=1`` in the
  environment (inherited by worker processes). In debug mode nothing here hides anything.
- :func:`quiet_environment`: environment settings for this process and the worker processes it starts.
- :func:`import_tensorflow`: import TensorFlow with its C++ start-up lines captured (replayed if the import fails).
- :func:`quiet`: a context manager around a noisy third-party call: output written by C/C++ code to file
  descriptors 1 and 2 is captured and dropped (replayed if the call raises); TensorFlow's and absl's Python loggers
  are raised to ERROR and the Python warnings issued by TensorFlow/LiteRT/tf2onnx modules ignored. Other
  Python-level warnings (ours among them) and prints still reach the terminal, so real warnings stay visible.
- :func:`worker_init`: what a worker process (``sweep --workers N``, ``compare``) runs before its own work.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings

__all__ = ["DEBUG_ENV", "debug", "import_tensorflow", "quiet", "quiet_environment", "set_debug", "worker_init"]

DEBUG_ENV = "KERAS_REGNET_DEBUG"
_LOGGERS = ("tensorflow", "absl", "h5py", "jax._src.xla_bridge")
_CHATTY_MODULES = (r"tensorflow\.", r"absl\.", r"ai_edge_litert\.", r"tf2onnx\.")


def debug() -> bool:
    """Whether everything should be shown (``--debug`` or ``KERAS_REGNET_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def set_debug(flag: bool) -> None:
    """Set the switch for this process and the processes it starts."""
    os.environ[DEBUG_ENV] = "1" if flag else "0"


def quiet_environment() -> None:
    """TensorFlow's C++ log level (unless the user set one, or debug mode): errors only after start-up."""
    if not debug():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _captured_fds(fds=(1, 2), replay_on_error=True):
    """Capture what is written to the file descriptors ``fds`` (C/C++ output) into a temporary file."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {}
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as captured:
        try:
            for fd in fds:
                saved[fd] = os.dup(fd)
                os.dup2(captured.fileno(), fd)
            if 2 in saved and _writes_to_fd(python_stderr, 2):
                # Python-level writes (warnings, our own lines, progress bars) keep going to the real stderr.
                sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved[2]), "wb"), encoding="utf-8",
                                              errors="replace", line_buffering=True)
            yield
        except BaseException:
            _restore(saved, python_stderr)
            if replay_on_error:
                captured.seek(0)
                text = captured.read().decode("utf-8", "replace")
                if text:
                    python_stderr.write(text)
                    python_stderr.flush()
            raise
        finally:
            _restore(saved, python_stderr)


def _writes_to_fd(stream, fd) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


def _restore(saved, python_stderr):
    if sys.stderr is not python_stderr:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
            sys.stderr.close()
        sys.stderr = python_stderr
    for fd, copy in list(saved.items()):
        with contextlib.suppress(OSError):
            os.dup2(copy, fd)
            os.close(copy)
        saved.pop(fd)


@contextlib.contextmanager
def quiet(replay_on_error: bool = True):
    """Around a noisy third-party call: drop its C/C++ output and its TF/absl log records below ERROR.

    Does nothing in debug mode. If the call raises, the captured output is written to stderr (it may explain the
    error) unless ``replay_on_error=False``.
    """
    if debug():
        yield
        return
    levels = {}
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        levels[name] = logger.level
        if logger.getEffectiveLevel() < logging.ERROR:
            logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _captured_fds(replay_on_error=replay_on_error):
            for module in _CHATTY_MODULES:  # their own warnings (e.g. the converter's quantization notes), not ours
                warnings.filterwarnings("ignore", module=module)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def import_tensorflow():
    """Import TensorFlow (if installed) with its C++ start-up lines captured; in debug mode, show them."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_environment()
    if debug():
        import tensorflow

        return tensorflow
    import importlib.util

    try:
        if importlib.util.find_spec("tensorflow") is None:
            return None  # not installed: the caller says which extra to install when it needs it
    except (ImportError, ValueError):
        return None
    with _captured_fds(fds=(2,)):
        import tensorflow
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    return tensorflow


def worker_init() -> None:
    """Run first in a worker process: the quiet environment and a quiet TensorFlow import."""
    quiet_environment()
    import_tensorflow()
