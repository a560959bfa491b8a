"""Serving: ``yolov6-serve`` runs a Detector inside a Triton Inference Server; :class:`Client` talks to it.

``from yolov6_sdk.serve import Client`` needs the ``serve`` extra (``pip install 'yolov6-sdk[serve]'``); the
names are imported on first use, so importing this package stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "Server", "ServeOptions"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from yolov6_sdk.serve.client import Client

        return Client
    if name in ("Server", "ServeOptions"):
        from yolov6_sdk.serve import server

        return getattr(server, name)
    raise AttributeError(f"module 'yolov6_sdk.serve' has no attribute {name!r}")
