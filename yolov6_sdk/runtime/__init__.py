"""Inference runtime: the Detector facade, backends, post-processing and Results (pre-processing is in artifact/)."""
