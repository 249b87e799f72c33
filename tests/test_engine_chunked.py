"""The engine and the handler on the GPU's decoding path (model.chunked), run on CPU with
capture off: one-shot, streamed and session answers must equal the per-step loop's."""

from __future__ import annotations

import json

import pytest

from serve.engine import Engine
from serve.handler import CharRNNHandler
from serve.standin import SEQUENCE_ID, SEQUENCE_START, StandInContext
from serve.validation import GenerateRequest, SessionRequest


@pytest.fixture(scope="module")
def engines(tiny_artifacts):
    plain = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json)
    chunked = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, chunked=True)
    assert plain.chunked is None and chunked.chunked is not None
    return plain, chunked


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


def test_one_shot_names_equal_the_per_step_loop(engines):
    plain, chunked = engines
    reqs = requests(70)
    assert chunked.generate(reqs) == plain.generate(reqs)
    assert chunked.generate(reqs[:1]) == plain.generate(reqs[:1])


def test_streamed_characters_equal_the_per_step_loop(engines, tiny_artifacts):
    """Beside the one-graph ONNX decoder too (as on CPU), which takes the greedy unstreamed
    requests: the streamed ones keep their own request indices."""
    for graph in (None, tiny_artifacts.dir / "charrnn_generate.onnx"):
        plain, chunked = (Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json,
                                                greedy_graph=graph, chunked=c) for c in (False, True))
        check_streams(plain, chunked)


def check_streams(plain, chunked):
    reqs = [GenerateRequest(num=2), GenerateRequest(prefix="Ma", num=3, temperature=1.0, seed=4, stream=True),
            GenerateRequest(prefix="J", stream=True), GenerateRequest(prefix="A", num=2, temperature=0.5, seed=1)]
    got = {}
    for name, engine in (("plain", plain), ("chunked", chunked)):
        events = []
        names = engine.generate(reqs, on_chars=lambda i, chars, events=events: events.append((i, chars)))
        got[name] = (names, events)
    assert got["chunked"] == got["plain"] and got["plain"][1]


def test_session_answers_equal_the_per_step_loop(engines):
    plain, chunked = engines
    script = [[("a", SessionRequest(text="Lu"), True), ("b", SessionRequest(), True), ("c", SessionRequest(text="M", max_length=3), True)],
              [("a", SessionRequest(append="c"), False), ("b", SessionRequest(append="J", top_k=3), False)],
              [("a", SessionRequest(text="Le"), False), ("c", SessionRequest(append="ari"), False),
               ("c", SessionRequest(append="a"), False)],
              [("b", SessionRequest(append="oão", max_length=40), False), ("a", SessionRequest(close=True), False),
               ("d", SessionRequest(text="Lucas"), True), ("e", SessionRequest(text="Ana"), True)],
              # nothing new typed: the first step may end the name (it continues one), as in decode
              [("d", SessionRequest(append=""), False), ("e", SessionRequest(append=""), False)]]
    for wave in script:
        assert chunked.session(wave) == plain.session(wave)


def test_the_handler_uses_the_chunked_path_and_answers_as_before(model_dir, monkeypatch):
    def run(chunked_default: bool):
        monkeypatch.setattr(Engine, "CHUNKED_ON_CPU", chunked_default)
        handler = CharRNNHandler()
        ctx = StandInContext(model_dir, model_yaml_config={"handler": {"mode": "generate", "one_graph": False}})
        handler.initialize(ctx)
        assert (handler.engine.chunked is not None) == chunked_default
        bodies = [json.dumps({"prefix": r.prefix, "max_length": r.max_length, "num": r.num, "temperature": r.temperature,
                              "top_k": r.top_k, "seed": r.seed}).encode() for r in requests(20)]
        bodies.append(b'{"prefix": "A", "stream": true, "seed": 3, "temperature": 1.0, "num": 2}')
        got = ctx.run(handler, bodies)
        session = StandInContext(model_dir, model_yaml_config={"handler": {"mode": "session"}})
        shandler = CharRNNHandler()
        shandler.initialize(session)
        answers = session.run(shandler, [b'{"text": "Ma"}', b'{"text": "J"}'],
                              [{SEQUENCE_ID: "s1", SEQUENCE_START: True}, {SEQUENCE_ID: "s2", SEQUENCE_START: True}])
        return [(r.status, r.text, r.streamed) for r in got], [(r.status, r.text) for r in answers]

    assert run(True) == run(False)


def test_the_decoder_header_names_the_chunked_decoder(engines, tiny_artifacts):
    from serve.engine import ONNX_GRAPH, TORCH, TORCH_CHUNKED

    plain, chunked = engines
    sampled, greedy = GenerateRequest(temperature=1.0, seed=1), GenerateRequest()
    assert plain.decoder(sampled) == TORCH and chunked.decoder(sampled) == chunked.decoder(greedy) == TORCH_CHUNKED
    with_graph = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, chunked=True,
                                       greedy_graph=tiny_artifacts.dir / "charrnn_generate.onnx")
    assert with_graph.decoder(greedy) == ONNX_GRAPH and with_graph.decoder(sampled) == TORCH_CHUNKED
