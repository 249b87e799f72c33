"""charrnn.onnx as a step callable (the contract's STEP_INPUTS -> STEP_OUTPUTS)."""

from __future__ import annotations

import numpy as np

from core import contract
from runtime.session import OnnxModel


class OnnxStep(OnnxModel):
    """charrnn.onnx as a step callable `(char [B] int64, hidden [L, B, H] float32) -> (logits, hidden_out)`."""

    INPUTS, OUTPUTS = contract.STEP_INPUTS, contract.STEP_OUTPUTS

    def __call__(self, char: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        char_name, hidden_name = self.INPUTS
        logits, hidden_out = self.session.run(self.output_names, {char_name: np.asarray(char, dtype=np.int64),
                                                                  hidden_name: np.asarray(hidden, dtype=np.float32)})
        return logits, hidden_out
