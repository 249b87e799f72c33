"""A stand-in for model.graphs.CudaGraphs on CPU, so tests run the decoder's captured path."""


class ReplayingGraphs:
    """A stand-in for model.chunked.CudaGraphs on CPU: a "graph" calls its work again on replay,
    so the captured protocol (fixed keys, load then chunks, one flag read per chunk, every prefix
    step forced) runs as on a GPU."""

    def __init__(self):
        self.captured, self.replays = [], 0

    def capture(self, works):
        self.captured += list(works)
        return {key: self.Graph(self, work) for key, work in works.items()}

    class Graph:
        def __init__(self, owner, work):
            self.owner, self.work = owner, work

        def replay(self):
            self.owner.replays += 1
            self.work()
