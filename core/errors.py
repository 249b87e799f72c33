"""Errors of the export artifacts (torch-free, so the ONNX runtime can raise them)."""


class ArtifactError(ValueError):
    """An exported artifact that cannot be used; the message names the file."""
