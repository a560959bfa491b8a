"""``python -m yolov6_sdk COMMAND ...``: the ``yolov6`` command (:mod:`yolov6_sdk.cli.main`)."""

from __future__ import annotations

from yolov6_sdk.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
