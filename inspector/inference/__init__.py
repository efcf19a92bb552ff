"""Inference: runtimes (ONNX Runtime, TensorRT), the detectors (prompt, texture, match),
the good-part unknown-defect branch and the spectral kernels.
"""
