"""The engine's one torch route (model.chunked, RowBatch in, NameText out) for one-shot names,
streams and session batches: eager on CPU, and the GPU's captured protocol run on CPU with a
stand-in for the CUDA graphs. Both must answer as the per-step reference does (make_rows, then
model.decode.decode, then Vocab.decode), and as each other."""

from __future__ import annotations

import json

import pytest

from core.request import make_rows
from model.chunked import ChunkedDecoder
from model.decode import decode
from serve.engine import NBEST, Engine
from serve.handler import CharRNNHandler
from serve.standin import SEQUENCE_ID, StandInContext
from serve.validation import GenerateRequest, SessionRequest
from tests.replaying_graphs import ReplayingGraphs


def with_captured_loop(engine: Engine, sizes=(1, 8, 64, 256)) -> Engine:
    """The engine with its torch loop on the GPU's protocol (buckets, packed rows, load graph,
    chunks of steps replayed, one flag read per chunk), the graphs replaced by ReplayingGraphs."""
    d = engine.chunked
    engine.chunked = ChunkedDecoder(d.step, bos_id=d.bos_id, eos_id=d.eos_id, hidden_shape=d.hidden_shape,
                                    buckets=d.buckets, max_steps=d.max_steps, max_prefix=d.max_prefix, chunk=d.chunk,
                                    capture=True, graphs=ReplayingGraphs())
    engine.chunked.warm_up(sizes=sizes, record=True)
    return engine


@pytest.fixture(scope="module")
def engines(tiny_artifacts):
    eager = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json)
    captured = with_captured_loop(Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json))
    assert not eager.chunked.capture and captured.chunked.capture
    return eager, captured


def requests(n: int) -> list[GenerateRequest]:
    prefixes = ["", "M", "Jo", "A", "Lu"]
    out = []
    for i in range(n):
        if i % 2:
            out.append(GenerateRequest(prefix=prefixes[i % 5], max_length=3 + i % 20, num=1 + i % 4))
        else:
            out.append(GenerateRequest(prefix=prefixes[i % 5], temperature=0.4 + (i % 6) * 0.3, top_k=i % 5,
                                       seed=i, num=1 + i % 3, max_length=5 + i % 30))
    return out


def reference_names(engine: Engine, request: GenerateRequest) -> list[str]:
    """The names of one request by the per-step reference: its rows, decoded alone."""
    vocab = engine.vocab
    rows = make_rows(vocab, request.prefix, num=request.num, max_length=request.max_length,
                     temperature=request.temperature, top_k=request.top_k, seed=request.seed)
    ids = decode(engine.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=engine.hidden_shape)
    return [vocab.decode(row) for row in ids]


def test_one_shot_names_equal_the_per_step_reference(engines):
    eager, captured = engines
    reqs = requests(70)
    got = eager.generate(reqs)
    assert captured.generate(reqs) == got
    decoded = [(r, names) for r, names in zip(reqs, got) if eager.decoder(r) != NBEST]
    assert len(decoded) >= 30 and [names for _, names in decoded] == [reference_names(eager, r) for r, _ in decoded]
    assert captured.generate(reqs[:1]) == eager.generate(reqs[:1]) == [reference_names(eager, reqs[0])]
    assert captured.chunked.eager_chunks == 0  # every chunk replayed a "graph"


def test_streamed_characters_equal_on_both_paths(engines, tiny_artifacts):
    """Beside the one-graph ONNX decoder too (as on CPU), which takes the greedy unstreamed
    requests: the streamed ones keep their own request indices."""
    for graph in (None, tiny_artifacts.dir / "charrnn_generate.onnx"):
        eager, captured = (Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json,
                                                 greedy_graph=graph) for _ in range(2))
        check_streams(eager, with_captured_loop(captured, sizes=(8,)))


def check_streams(eager, captured):
    reqs = [GenerateRequest(num=2), GenerateRequest(prefix="Ma", num=3, temperature=1.0, seed=4, stream=True),
            GenerateRequest(prefix="J", stream=True), GenerateRequest(prefix="A", num=2, temperature=0.5, seed=1)]
    got = {}
    for name, engine in (("eager", eager), ("captured", captured)):
        events = []
        names = engine.generate(reqs, on_chars=lambda i, chars, events=events: events.append((i, chars)))
        got[name] = (names, events)
    assert got["captured"] == got["eager"] and got["eager"][1]
    # the characters streamed for each name spell the name the request answers
    names, events = got["eager"]
    spelled = {(i, j): "" for i, r in enumerate(reqs) if r.stream for j in range(r.num)}
    for i, chars in events:
        for j, c in chars:
            spelled[i, j] += c
    assert spelled == {(i, j): names[i][j] for i, j in spelled}


def test_session_answers_equal_on_both_paths(engines):
    eager, captured = engines
    script = [[("a", SessionRequest(text="Lu")), ("b", SessionRequest(text="")), ("c", SessionRequest(text="M", max_length=3))],
              [("a", SessionRequest(append="c")), ("b", SessionRequest(append="J", top_k=3))],
              [("a", SessionRequest(text="Le")), ("c", SessionRequest(append="ari")),
               ("c", SessionRequest(append="a"))],
              [("b", SessionRequest(append="oão", max_length=40)), ("a", SessionRequest(close=True)),
               ("d", SessionRequest(text="Lucas")), ("e", SessionRequest(text="Ana"))],
              # nothing new typed: the first step may end the name (it continues one), as in decode
              [("d", SessionRequest(append="")), ("e", SessionRequest(append=""))]]
    for wave in script:
        assert captured.session(wave) == eager.session(wave)


def test_the_handler_answers_the_same_on_both_paths(model_dir):
    def run(captured: bool):
        handler = CharRNNHandler()
        ctx = StandInContext(model_dir, model_yaml_config={"handler": {"mode": "generate", "one_graph": False}})
        handler.initialize(ctx)
        if captured:
            with_captured_loop(handler.engine)
        bodies = [json.dumps({"prefix": r.prefix, "max_length": r.max_length, "num": r.num, "temperature": r.temperature,
                              "top_k": r.top_k, "seed": r.seed}).encode() for r in requests(20)]
        bodies.append(b'{"prefix": "A", "stream": true, "seed": 3, "temperature": 1.0, "num": 2}')
        got = ctx.run(handler, bodies)
        session = StandInContext(model_dir, model_yaml_config={"handler": {"mode": "session"}})
        shandler = CharRNNHandler()
        shandler.initialize(session)
        if captured:
            with_captured_loop(shandler.engine)
        answers = session.run(shandler, [b'{"text": "Ma"}', b'{"text": "J"}'],
                              [{SEQUENCE_ID: "s1"}, {SEQUENCE_ID: "s2"}])
        return [(r.status, r.text, r.streamed) for r in got], [(r.status, r.text) for r in answers]

    assert run(True) == run(False)


def test_the_decoder_header_names_the_route(engines, tiny_artifacts):
    from serve.engine import ONNX_GRAPH, TORCH, TORCH_CHUNKED

    eager, captured = engines
    sampled, greedy = GenerateRequest(temperature=1.0, seed=1), GenerateRequest()
    assert eager.decoder(sampled) == eager.decoder(greedy) == TORCH
    assert captured.decoder(sampled) == captured.decoder(greedy) == TORCH_CHUNKED
    with_graph = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json,
                                       greedy_graph=tiny_artifacts.dir / "charrnn_generate.onnx")
    assert with_graph.decoder(greedy) == ONNX_GRAPH and with_graph.decoder(sampled) == TORCH
