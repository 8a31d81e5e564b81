"""Deployment: ONNX export (fp32, int8) and ONNX Runtime sessions (needs the ``onnx`` extra)."""
