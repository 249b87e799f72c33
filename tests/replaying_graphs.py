"""A stand-in for model.graphs.CudaGraphs on CPU, so tests run the decoder's captured path."""

from __future__ import annotations

from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


class GraphReadsFreedMemory(AssertionError):
    """A replay would read memory that the capture read but nobody holds any more, or memory the
    capture never read: a real CUDA graph reads the addresses fixed at capture."""


class ReplayingGraphs:
    """A stand-in for model.chunked.CudaGraphs on CPU: a "graph" calls its work again on replay,
    so the captured protocol (fixed keys, load then chunks, one flag read per chunk, every prefix
    step forced) runs as on a GPU.

    It also holds the work to a real graph's memory contract: a CUDA graph reads the addresses
    its capture read. The capture notes every tensor storage its work reads that outlives the
    work (buffers, weights, tables: what the graph would read in place); a replay raises
    GraphReadsFreedMemory when one of those has been freed since, or when the work reads another
    long-lived storage instead (a table replaced after the capture, say), either of which the
    real graph would silently read stale or freed memory for."""

    def __init__(self):
        self.captured, self.replays = [], 0

    def capture(self, works):
        self.captured += list(works)
        return {key: self.Graph(self, key, work) for key, work in works.items()}

    class Graph:
        def __init__(self, owner, key, work):
            self.owner, self.key, self.work = owner, key, work
            self.reads = _run_noting_reads(work)

        def replay(self):
            self.owner.replays += 1
            freed = [ptr for ptr, ref in self.reads.items() if ref.expired()]
            if freed:
                raise GraphReadsFreedMemory(f"graph {self.key}: its capture read {len(freed)} storage(s) freed since "
                                            "(a CUDA graph would read freed memory)")
            other = set(_run_noting_reads(self.work)) - set(self.reads)
            if other:
                raise GraphReadsFreedMemory(f"graph {self.key}: the replay reads {len(other)} long-lived storage(s) "
                                            "its capture did not (a CUDA graph would read the captured addresses)")


class _Reads(TorchFunctionMode):
    """Notes the storage of every tensor an operator reads (weak references only)."""

    def __init__(self):
        super().__init__()
        self.seen: dict[int, StorageWeakRef] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for value in tree_flatten((args, kwargs))[0]:
            if hasattr(value, "untyped_storage"):
                storage = value.untyped_storage()
                if storage.nbytes():
                    self.seen.setdefault(storage.data_ptr(), StorageWeakRef(storage))
        return func(*args, **kwargs)


def _run_noting_reads(work) -> dict[int, StorageWeakRef]:
    """Run work(); the storages it read that are still alive after it returned (what it did not
    make for itself), by address."""
    with _Reads() as reads:
        work()
    return {ptr: ref for ptr, ref in reads.seen.items() if not ref.expired()}
