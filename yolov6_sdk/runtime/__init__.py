"""Inference runtime: pre-processing, backends, post-processing and Results."""
