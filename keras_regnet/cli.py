"""The ``keras-regnet`` command line: one sub-command per job, each defined in its own module.

Only the module of the sub-command being run is imported (``keras-regnet --help`` imports none), and modules import
TensorFlow inside ``run``, so ``keras-regnet --help`` and ``keras-regnet models`` start without TensorFlow.
Each module listed in ``COMMANDS`` provides ``add_arguments(parser)`` and ``run(args) -> int``.

Expected errors (bad input, missing files, failed downloads, a missing optional package, Ctrl-C) end the command
with one line on stderr and a non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name: (module, one-line help)
COMMANDS = {
    "models": ("keras_regnet.commands.models", "print the 24 paper models with computed vs paper complexity"),
    "predict": ("keras_regnet.commands.predict", "classify images with a paper model or your .keras model (top classes)"),
    "convert": ("keras_regnet.commands.convert", "convert timm/pycls/Keras 2 RegNet weights to a Keras .weights.h5"),
    "export": ("keras_regnet.commands.export", "SavedModel for TF Serving + TFLite (+ ONNX), verified against Keras, versioned"),
    "sweep": ("keras_regnet.commands.sweep", "sample a design space and proxy-train each model (resumable JSONL)"),
    "edf": ("keras_regnet.commands.edf", "compare design spaces: error EDF plot, KS and bootstrap table"),
    "fit": ("keras_regnet.commands.fit", "fit the quantized linear width model (w0, wa, wm) to samples"),
    "compare": ("keras_regnet.commands.compare", "design-space comparison in one command (demo: digits, no network)"),
    "train": ("keras_regnet.commands.train", "train with the paper's ImageNet recipe or fine-tune (resumable, tf.distribute)"),
    "explain": ("keras_regnet.commands.explain", "heatmap overlays of where a classifier looks (Grad-CAM etc., tf-keras-vis)"),
    "cache": ("keras_regnet.commands.cache", "list, verify or clear downloaded/converted weights and their sha256 pins"),
    "push": ("keras_regnet.commands.push", "share a model on the Hugging Face Hub as a keras-hub preset (hf://owner/name)"),
    "preset": ("keras_regnet.commands.preset", "write a keras-hub preset of a pretrained model (to mirror or host)"),
}

# Sub-commands that never touch Keras/TensorFlow: no TensorFlow start-up for them.
_NO_TENSORFLOW = {"models", "fit", "edf", "cache"}


# ------------------------------------------------------------------------------------------------ quick pre-checks
# Each sub-command's cheap checks, run after parsing and before its module imports TensorFlow or Keras, so that a
# missing file, folder or optional package is reported in well under a second (the command's own checks stay: these
# only say the same thing sooner). A rule takes the argument's value and raises FileNotFoundError/ValueError.

_WEIGHT_FILE_SUFFIXES = (".h5", ".keras", ".safetensors", ".pyth", ".pth", ".pt", ".npz")


def _image_paths(values):
    """predict/explain IMAGE...: each an existing image file or folder (keras_regnet.classify.find_images)."""
    for path in values or ():
        if not os.path.exists(path):
            raise FileNotFoundError(f"image {path!r} does not exist.")


def _model_source(value):
    """--model of predict/explain/train, MODEL of export: a .keras/.json file, a folder or URI, or a paper model name."""
    if not isinstance(value, str) or "://" in value or value.lstrip().startswith("{"):
        return
    if value.endswith(".keras") and not os.path.isfile(value):
        raise FileNotFoundError(f"model file {value!r} does not exist.")
    if value.endswith(".json") and not os.path.isfile(value):
        raise FileNotFoundError(f"spec file {value!r} does not exist.")
    if os.path.exists(value) or ":" in value:
        return
    if "/" in value or os.sep in value:
        raise FileNotFoundError(f"model {value!r} is neither an existing file or folder nor a paper model name.")
    from keras_regnet import specs  # pure Python: raises ValueError naming the known models

    specs.canonical_name(value)


def _weights_file(value):
    """--weights: 'imagenet[:tag]', 'none' and URIs pass; what looks like a file path must exist."""
    if not isinstance(value, str) or "://" in value or value.strip().lower() in WEIGHTS_NONE:
        return
    looks_like_path = value.endswith(_WEIGHT_FILE_SUFFIXES) or "/" in value or os.sep in value
    if looks_like_path and not value.startswith("imagenet") and not os.path.isfile(value):
        raise FileNotFoundError(f"weights file {value!r} does not exist.")


def _dataset(value):
    """--dataset: 'digits', a tfds name, PATH or folder:PATH; a path must be an existing folder (as load_dataset says)."""
    if not isinstance(value, str) or value in ("digits", "samples"):
        return
    if value.startswith("folder:"):
        path = os.path.expanduser(value[len("folder:"):])
        if not os.path.isdir(path):
            raise FileNotFoundError(f"image folder {path!r} does not exist (from dataset {value!r}).")
        return
    if os.path.isdir(os.path.expanduser(value)):
        return
    if os.sep in value or value.startswith("."):
        raise FileNotFoundError(
            f"dataset {value!r} looks like a path but is not an existing directory. Give a directory of class "
            "sub-folders (PATH/<class>/<image>), 'digits', or a tensorflow-datasets name such as 'imagenet2012'."
        )


def _representative(value):
    """export --representative: 'samples', an .npy file or a data set (as --dataset)."""
    if isinstance(value, str) and value.endswith(".npy"):
        if not os.path.isfile(value):
            raise FileNotFoundError(f"representative data file {value!r} does not exist.")
        return
    _dataset(value)


def _hub_repo(value):
    """push's hf://owner/name: checked before anything is loaded (keras_regnet.hub.uri is plain Python)."""
    from keras_regnet.hub.uri import parse_hub_uri

    parse_hub_uri(value, allow_revision=False)


def _existing_file(what, hint="", verb="does"):
    def rule(value):
        for path in [value] if isinstance(value, str) else value or ():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{what} {path!r} {verb} not exist{hint.format(path=path)}.")
    rule.__doc__ = f"an existing {what}"
    return rule


def _export_needs(args):
    needs = ["tensorflow"]
    if str(getattr(args, "tflite", "none")).strip().lower() != "none":
        needs.append("ai_edge_litert")
    if getattr(args, "onnx", False):
        needs += ["tf2onnx", "onnx", "onnxruntime"]
    return needs


def _train_needs(args):
    needs = ["tensorflow"]
    config = getattr(args, "config", None)
    if isinstance(config, str) and config.endswith((".yaml", ".yml")):
        needs.append("yaml")
    return needs


_IMAGE_COMMAND = {"images": _image_paths, "model": _model_source, "weights": _weights_file}

# command: (optional packages it cannot run without, or a function of the parsed args giving them;
#           {argument dest: rule}). Declared next to COMMANDS; tests/test_quick_errors.py checks every dest exists.
PRECHECKS = {
    "models": ((), {}),
    "cache": ((), {}),
    "predict": (("tensorflow",), _IMAGE_COMMAND),
    "explain": (("tensorflow", "tf_keras_vis", "matplotlib"), _IMAGE_COMMAND),
    "convert": ((), {"src": _existing_file("source weights", verb="do")}),
    "export": (_export_needs, {"model": _model_source, "weights": _weights_file,
                               "labels": _existing_file("labels file"), "representative": _representative}),
    "sweep": (("tensorflow",), {"dataset": _dataset}),
    "compare": (("tensorflow", "matplotlib", "scipy"), {"dataset": _dataset}),
    "train": (_train_needs, {"model": _model_source, "dataset": _dataset, "config": _existing_file("config file"),
                             "weights": _weights_file}),
    "edf": (("matplotlib", "scipy"), {"results": _existing_file(
        "results file", "; run `keras-regnet sweep --out {path}` first")}),
    "fit": (lambda args: ["matplotlib"] if getattr(args, "plot", None) else [],
            {"results": _existing_file("results file", "; run `keras-regnet sweep --out {path}` first")}),
    "push": ((), {"model": _model_source, "repo": _hub_repo, "weights": _weights_file}),
    "preset": ((), {"name": _model_source}),
}


def precheck(args) -> None:
    """Run ``args.command``'s cheap checks: its arguments that name paths, then the optional packages it needs.

    Raises FileNotFoundError / ValueError (a bad argument) or MissingExtraError (a missing extra) without importing
    TensorFlow, Keras or the sub-command's module.
    """
    from keras_regnet._extras import check

    needs, rules = PRECHECKS.get(args.command, ((), {}))
    for dest, rule in rules.items():
        value = getattr(args, dest, None)
        if value is not None:
            rule(value)
    check(needs(args) if callable(needs) else needs, feature="this command")

WEIGHTS_NONE = ("none", "random")


def _debug_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error, and TensorFlow's log lines")
    return parent


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The top-level parser; ``command`` selects whose flags are registered ("*": all, None: none)."""
    parser = argparse.ArgumentParser(
        prog="keras-regnet",
        description="RegNet and AnyNet (Designing Network Design Spaces, CVPR 2020) for Keras 3.",
        epilog="Each command has its own --help. Documentation: README.md and docs/ in the source tree.",
    )
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback of an error, and TensorFlow's log lines")
    from keras_regnet import __version__

    parser.add_argument("--version", action="version", version=f"keras-regnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parent = _debug_parent()
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[parent])
        p.set_defaults(_module=module)
        if command == "*" or command == name:
            importlib.import_module(module).add_arguments(p)
    return parser


DOCS_MARKER = "<!-- Generated from the parser (keras_regnet.cli.reference_markdown); do not edit below this line. -->"


def reference_markdown() -> str:
    """docs/cli.md's reference part: every sub-command with its usage and every argument with its help text.

    Regenerate with ``python -c "import keras_regnet.cli as c; c.write_reference('docs/cli.md')"`` (tests check it).
    """
    parser = build_parser("*")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = [DOCS_MARKER, ""]
    for name, command in sub.choices.items():
        formatter = command._get_formatter()
        usage = " ".join(command.format_usage().split())[len("usage: "):]
        lines += [f"### keras-regnet {name}", "", COMMANDS[name][1][0].upper() + COMMANDS[name][1][1:] + ".", "",
                  "```", usage, "```", ""]
        for action in command._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                metavar = "" if action.nargs == 0 else " " + formatter._format_args(action, action.dest.upper())
                flag = ", ".join(action.option_strings) + metavar
            else:
                flag = formatter._format_args(action, action.dest)
            try:
                text = formatter._expand_help(action) if action.help else ""
            except (ValueError, TypeError, KeyError):  # a stray % in a help text (test_cli renders every --help)
                text = action.help
            text = " ".join(text.split())
            if action.choices is not None and action.option_strings and "{" not in flag:
                text += f" (one of: {', '.join(map(str, action.choices))})"
            lines.append(f"- `{flag}`: {text}".rstrip(": ") if text else f"- `{flag}`")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_reference(path: str) -> None:
    """Replace everything below :data:`DOCS_MARKER` in ``path`` (docs/cli.md) with :func:`reference_markdown`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head = text.split(DOCS_MARKER)[0].rstrip() + "\n\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + reference_markdown())


def _command_in(argv) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), or None."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _normalize_weights(args) -> None:
    """One vocabulary for ``--weights`` everywhere: 'none' (any case) or 'random' means random initialisation."""
    weights = getattr(args, "weights", None)
    if isinstance(weights, str) and weights.strip().lower() in WEIGHTS_NONE:
        args.weights = "none"


def _error_line(command: str, error) -> str:
    """``keras-regnet CMD: error: MESSAGE``; a message longer than a screen is cut (no array dumps)."""
    message = str(error).strip() or type(error).__name__
    if len(message) > 1500:
        message = message[:1500].rstrip() + " ..."
    return f"keras-regnet {command}: error: {message}"


def _missing_module_message(error: ModuleNotFoundError) -> str | None:
    from keras_regnet._extras import extra_of, missing_message

    top = (error.name or "").split(".")[0]
    if extra_of(top) is None:
        return None
    return missing_message(top)


def main(argv=None) -> int:
    """Entry point of the ``keras-regnet`` console script."""
    from keras_regnet import _quiet

    saved = os.environ.get(_quiet.DEBUG_ENV)
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:  # --debug holds for this command and the processes it starts, not for later calls in this process
        if saved is None:
            os.environ.pop(_quiet.DEBUG_ENV, None)
        else:
            os.environ[_quiet.DEBUG_ENV] = saved


def _main(argv) -> int:
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    from keras_regnet import _quiet

    if debug:
        _quiet.set_debug(True)  # inherited by worker processes
    _quiet.quiet_environment()
    command = _command_in(argv)
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("keras-regnet: interrupted", file=sys.stderr)
        return 130
    debug = bool(getattr(args, "debug", False)) or _quiet.debug()
    _normalize_weights(args)
    from keras_regnet._extras import MissingExtraError

    try:
        precheck(args)
        if args.command not in _NO_TENSORFLOW:
            _quiet.import_tensorflow()  # its C++ start-up lines are hidden unless --debug
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"keras-regnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except MissingExtraError as e:
        if debug:
            raise
        print(_error_line(args.command, e), file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        message = _missing_module_message(e)
        if debug or message is None:
            raise
        print(_error_line(args.command, message), file=sys.stderr)
        return 2
    except (ValueError, OSError, NotImplementedError) as e:
        # ValueError: bad input; OSError: missing files (FileNotFoundError), permissions, failed downloads
        # (keras_regnet.weights.WeightsDownloadError), a full disk.
        if debug:
            raise
        print(_error_line(args.command, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
