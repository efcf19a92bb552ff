"""Training-side model code (torch). The line-PC runtime never imports this package:
it runs the exported ONNX graph (inspector.inference.runtimes)."""
