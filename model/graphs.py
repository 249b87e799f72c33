"""CUDA graph capture for the decoding loop (model.chunked): its chunks of steps, captured once
per bucket, sampling mode and position at warm-up, then replayed on the request path."""

from __future__ import annotations

import contextlib

import torch


class CudaGraphs:
    """Captures work into torch.cuda.CUDAGraph objects, all in one memory pool. What a chunk
    computes depends only on its key (bucket, mode, recording, position), never on the rows, so
    a capture replays correctly for any rows packed into the slot's buffers. (Tests on CPU
    substitute an object whose "graphs" call the work again: the same replay protocol.)"""

    def __init__(self, device: torch.device):
        self.device = device
        self.pool = None

    def capture(self, works: dict) -> dict:
        if not works:
            return {}
        with torch.cuda.device(self.device):  # the pool, streams and graphs of this decoder's device
            return self._capture(works)

    def _capture(self, works: dict) -> dict:
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graphs = {}
        with plain_torchscript():
            # warm up on a side stream (cuBLAS handles, TorchScript's first runs), as capture needs
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    for work in works.values():
                        work()
            torch.cuda.synchronize(self.device)
            # what torch.cuda.graph() does per graph, minus its gc.collect() and empty_cache():
            # hundreds of graphs are captured at load, into one pool (every value that outlives
            # a chunk is in the slot's own buffers, and replays never overlap)
            with torch.cuda.stream(side):
                for key, work in works.items():
                    graph = torch.cuda.CUDAGraph()
                    graph.capture_begin(pool=self.pool)
                    try:
                        work()
                    finally:
                        graph.capture_end()
                    graphs[key] = graph
        torch.cuda.synchronize(self.device)
        return graphs


@contextlib.contextmanager
def plain_torchscript():
    """TorchScript without its profiling/fusing executor while capturing: a fuser compiling or
    re-specialising mid-capture would break it, and replay has no launch overhead to save."""
    with torch.jit.optimized_execution(False):
        yield
