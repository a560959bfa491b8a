"""``python -m yolov6_sdk <command> ...``: the same commands as the ``yolov6-*`` scripts."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "info": "yolov6_sdk.cli.info",
    "detect": "yolov6_sdk.cli.detect",
    "build": "yolov6_sdk.cli.build",
    "bench": "yolov6_sdk.cli.bench",
    "train": "yolov6_sdk.cli.train",
    "eval": "yolov6_sdk.cli.eval",
    "datagen": "yolov6_sdk.training.datagen",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m yolov6_sdk {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
