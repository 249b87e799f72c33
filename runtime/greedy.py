"""charrnn_generate.onnx, the whole greedy loop in one session.run (contract: export.generate_graph)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core import contract, manifest
from core.request import Row
from model.decode_numpy import decode_greedy_graph, decode_greedy_graph_scored
from runtime.session import OnnxModel


class OnnxGreedy(OnnxModel):
    """charrnn_generate.onnx: `(prefix [B, P], prefix_length [B], max_length []) -> (ids [B, max_length],
    length [B], logprob [B])`, the whole greedy loop in one session.run (contract: export.generate_graph)."""

    INPUTS, OUTPUTS = contract.GENERATE_INPUTS, contract.GENERATE_OUTPUTS

    def __call__(self, prefix: np.ndarray, prefix_length: np.ndarray,
                 max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feeds = (np.asarray(prefix, dtype=np.int64), np.asarray(prefix_length, dtype=np.int64),
                 np.array(max_length, dtype=np.int64))
        ids, length, logprob = self.session.run(self.output_names, dict(zip(self.INPUTS, feeds)))
        return ids, length, logprob

    def require_export(self, fingerprint: str | None, symbols: Sequence[str], other: str) -> None:
        """Refuse a one-graph model from another export than `other` (its vocab.json fingerprint
        and symbols): the two would decode different names (core.manifest.check_same_export)."""
        manifest.check_same_export(self.meta, self.source, {"fingerprint": fingerprint, "symbols": list(symbols)},
                                   other, keys=("symbols",))

    def decode(self, rows: Sequence[Row]) -> list[list[int]]:
        """Greedy rows in one run: ids per row, end token excluded (model.decode_numpy)."""
        return decode_greedy_graph(self, rows, eos_id=self.vocab.eos_id)

    def decode_scored(self, rows: Sequence[Row]) -> tuple[list[list[int]], list[float]]:
        """`decode` and each name's log-probability (model.nbest's definition), from the same run."""
        return decode_greedy_graph_scored(self, rows, eos_id=self.vocab.eos_id)
