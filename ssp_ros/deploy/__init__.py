"""Deployment: export to ONNX, INT8 calibration frames and TensorRT engine builds (what runs before a flight)."""
