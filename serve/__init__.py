"""Serving: the TorchServe-free decoding engine, the TorchServe handler, archive/serve tools."""
