"""Export stages: ONNX, quantised ONNX and TensorRT engines."""
