"""Thin training subtree (installed as yolov6_sdk.training): data, assignment, losses, trainer, validation."""
