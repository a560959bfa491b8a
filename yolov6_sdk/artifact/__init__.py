"""The contract every artifact obeys, shared by export and runtime (which never import each other).

:mod:`~yolov6_sdk.artifact.spec` (I/O spec, precision / backend / NMS-mode vocabularies, suffix table, tensor
names), :mod:`~yolov6_sdk.artifact.meta` (:class:`~yolov6_sdk.artifact.meta.ArtifactMeta`, what every artifact
records: its writers and its one bounded reader), :mod:`~yolov6_sdk.artifact.sidecar` (sidecar ``.json``, GPU
probes),
:mod:`~yolov6_sdk.artifact.trt_compat` (TensorRT compatibility probes) and the input contract:
:mod:`~yolov6_sdk.artifact.images` (image decoding) and :mod:`~yolov6_sdk.artifact.preprocess` (image-size rule,
letterbox, pre-processing).
"""
