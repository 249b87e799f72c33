"""The do-nothing TorchServe handler of `make bench-serving` (packed into ceiling.mar by
bench/ceiling.py, never shipped): every request of a batch gets the same fixed JSON answer,
without reading it. Served beside charrnn.mar in the same TorchServe with the same workers,
batchSize and maxBatchDelay, it measures what that server delivers when the handler costs
nothing: the ceiling the shipped handler is compared with.

TorchServe allows one class per handler module; this file imports nothing of the project (it is
the only Python file in its archive)."""

ANSWER = '{"names": ["Maria"], "logprobs": [-1.0]}'  # the shape of a one-shot greedy answer
JSON = "application/json"


class CeilingHandler:
    def __init__(self):
        self.initialized = False

    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        for i in range(len(data)):  # as the shipped handler does for each answer
            context.set_response_content_type(i, JSON)
        return [ANSWER] * len(data)
