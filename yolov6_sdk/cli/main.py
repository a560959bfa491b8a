"""``yolov6 COMMAND [options]``: one entry point for every command (``yolov6 build`` runs ``yolov6-build``, ...).

Each command's module is imported only when it is run, so ``yolov6 --help`` stays quick. The installed
``yolov6-<command>`` scripts start here too (:func:`detect`, :func:`build`, ...): signals are handled from the
first line, so Ctrl-C while a command still imports torch ends with one line, not a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from yolov6_sdk.cli.signals import command, run_command

# command -> (module with main(argv), what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": ("yolov6_sdk.cli.detect", "detect objects in images, folders and videos"),
    "build": ("yolov6_sdk.cli.build", "export, quantise and build an ONNX model or a TensorRT engine"),
    "eval": ("yolov6_sdk.cli.eval", "COCO mAP of a model on a validation split"),
    "bench": ("yolov6_sdk.cli.bench", "latency and FPS per backend, precision and batch size"),
    "train": ("yolov6_sdk.cli.train", "train or fine-tune a model"),
    "serve": ("yolov6_sdk.cli.serve", "serve a model on a Triton Inference Server (HTTP, gRPC, metrics)"),
    "info": ("yolov6_sdk.cli.info", "parameters and GFLOPs of the model zoo"),
    "datagen": ("yolov6_sdk.cli.datagen", "write a synthetic detection dataset"),
}


def usage() -> str:
    """The dispatcher's help text: the commands and what each does."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: yolov6 COMMAND [options]",
        "",
        "commands (each is also installed as yolov6-COMMAND):",
        *(f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help   show this help and exit",
        "  --version    print the SDK version and exit",
        "",
        "yolov6 COMMAND --help shows the options of one command.",
    ]
    return "\n".join(lines)


@command("yolov6")
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``argv[0]``'s command with the rest of ``argv``; returns its exit status (2 for a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        from yolov6_sdk import __version__

        print(f"yolov6-sdk {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from yolov6_sdk.cli.options import did_you_mean

        hint = did_you_mean(name, list(COMMANDS))
        print(f"yolov6: unknown command {name!r}{hint}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from yolov6_sdk.cli import options

    options.INVOKED_AS.append(f"yolov6 {name}")
    try:
        return int(importlib.import_module(COMMANDS[name][0]).main(rest) or 0)
    finally:
        options.INVOKED_AS.pop()


def _installed(name: str) -> int:
    """The ``yolov6-<name>`` script: import the command's module (signals already handled) and run it."""
    return run_command(f"yolov6-{name}", lambda argv: importlib.import_module(COMMANDS[name][0]).main(argv), None)


def detect() -> int:
    return _installed("detect")


def build() -> int:
    return _installed("build")


def bench() -> int:
    return _installed("bench")


def train() -> int:
    return _installed("train")


def eval() -> int:
    return _installed("eval")


def info() -> int:
    return _installed("info")


def datagen() -> int:
    return _installed("datagen")


if __name__ == "__main__":
    raise SystemExit(main())
