"""Exports of one recurrent step to TorchScript and ONNX, and the torch-free ONNX Runtime runtime."""
