"""The engine's one torch route (model.chunked, RowBatch in, NameText out) for one-shot names,
streams and session batches: eager on CPU, and the GPU's captured protocol run on CPU with a
stand-in for the CUDA graphs. Both must answer as the per-step reference does (make_rows, then
model.decode.decode, then Vocab.decode), and as each other."""

from __future__ import annotations

import json
import math

import pytest

from core.request import make_rows
from model.chunked import ChunkedDecoder
from model.decode import decode
from model.nbest_torch import TorchStepper
from serve import answers
from serve.engine import NBEST, TORCH, TORCH_CHUNKED, Engine, reachable_steps
from serve.handler import CharRNNHandler
from serve.standin import SEQUENCE_ID, StandInContext
from serve.validation import GenerateRequest, Limits, SessionRequest
from serve.wire import DIGITS
from tests.conftest import assert_close
from tests.replaying_graphs import ReplayingGraphs


def with_captured_loop(engine: Engine, sizes=(1, 8, 64, 256)) -> Engine:
    """The engine with its torch loop on the GPU's protocol (buckets, packed rows, load graph,
    chunks of steps replayed, one flag read per chunk), the graphs replaced by ReplayingGraphs."""
    d = engine.chunked
    engine.chunked = ChunkedDecoder(d.step, bos_id=d.bos_id, eos_id=d.eos_id, hidden_shape=d.hidden_shape,
                                    buckets=d.buckets, max_steps=d.max_steps, max_prefix=d.max_prefix, chunk=d.chunk,
                                    capture=True, graphs=ReplayingGraphs(), score=d.score)
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


def assert_same_session_answers(got: list, want: list) -> None:
    """Everything exactly (texts, completions, the next characters in order), but the next
    characters' probabilities by the parity rule (at the answers' rounding): they come from each
    path's recorded logits, and the captured path steps the rows padded to a bucket, another
    matrix-product shape than the eager path's (docs/numerics.md)."""
    def without_p(answers):
        return [{**a, "next": [c["char"] for c in a["next"]]} if isinstance(a, dict) and "next" in a else a
                for a in answers]

    assert without_p(got) == without_p(want)
    for g, w in zip(got, want):
        if isinstance(w, dict) and "next" in w:
            assert_close([c["p"] for c in g["next"]], [c["p"] for c in w["next"]], w["text"], rounding=10.0**-DIGITS)


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
        assert_same_session_answers(captured.session(wave), eager.session(wave))


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
        assert all(r.status == 200 for r in answers)
        return [(r.status, r.text, r.streamed) for r in got], [json.loads(r.text) for r in answers]

    captured, eager = run(True), run(False)
    # one-shot answers: statuses, names and streamed characters exactly; the log-probabilities by
    # the parity rule at the answers' rounding (each path sums them as it decodes, the captured one
    # over rows padded to a bucket: another matrix-product shape, docs/numerics.md)
    def split(got):
        out = []
        for status, text, streamed in got:
            lines = [json.loads(line) for line in (streamed.decode().splitlines() if streamed else [text])]
            out.append((status, [{k: v for k, v in b.items() if k != "logprobs"} for b in lines],
                        [lp for b in lines for lp in b.get("logprobs", [])]))
        return out

    for (c_status, c_rest, c_lps), (e_status, e_rest, e_lps) in zip(split(captured[0]), split(eager[0]), strict=True):
        assert (c_status, c_rest) == (e_status, e_rest)
        assert_close(c_lps, e_lps, "one-shot log-probabilities", rounding=10.0**-DIGITS)
    assert_same_session_answers(captured[1], eager[1])


def test_the_decoder_header_names_the_route(engines, tiny_artifacts):
    from serve.engine import ONNX_GRAPH, TORCH, TORCH_CHUNKED

    eager, captured = engines
    sampled, greedy = GenerateRequest(temperature=1.0, seed=1), GenerateRequest()
    assert eager.decoder(sampled) == eager.decoder(greedy) == TORCH
    assert captured.decoder(sampled) == captured.decoder(greedy) == TORCH_CHUNKED
    with_graph = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json,
                                       greedy_graph=tiny_artifacts.dir / "charrnn_generate.onnx")
    assert with_graph.decoder(greedy) == ONNX_GRAPH and with_graph.decoder(sampled) == TORCH


class CountingStep:
    """The engine's step, counting its calls (both the decoding loop's and any scoring pass's)."""

    def __init__(self, step):
        self.step, self.calls = step, 0

    def __call__(self, char, hidden):
        self.calls += 1
        return self.step(char, hidden)


def test_the_torch_route_scores_its_names_as_it_decodes_them(engines):
    """Each answer's log-probabilities are model.nbest.score's of its names (serve.answers), on
    both paths, streamed requests included, and the engine calls its step no more often for
    `answer` than for the names alone (`generate`): no second pass over the names."""
    reqs = [r for r in requests(40) if r.num == 1 or r.temperature > 0]
    reqs.append(GenerateRequest(prefix="Lu", stream=True, temperature=1.0, seed=5, num=2))
    for engine in engines:
        assert all(engine.decoder(r) in (TORCH, TORCH_CHUNKED) for r in reqs)
        got = engine.answer(reqs, on_chars=lambda i, chars: None)
        stepper = TorchStepper(engine.step, engine.hidden_shape)
        for a in got:
            want = answers.scores(stepper, engine.vocab, a.names)
            assert len(a.logprobs) == len(a.names) == len(want) > 0
            assert all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6) for x, y in zip(a.logprobs, want)), (a, want)
        counting = CountingStep(engine.chunked.step)
        engine.step = engine.chunked.step = counting
        try:
            assert [a.names for a in engine.answer(reqs)] == engine.generate(reqs) == [a.names for a in got]
            calls = counting.calls
            counting.calls = 0
            engine.generate(reqs)
            assert calls == 2 * counting.calls > 0
        finally:
            engine.step = engine.chunked.step = counting.step


def test_the_gpu_captures_only_the_positions_a_request_can_reach(tiny_artifacts):
    """A one-shot name has at most max_length characters; a session row feeds at most its whole
    text (max_prefix) and then completes at least one step: the captured chunks cover exactly
    that (plus the scoring step of one-shot runs), and requests at the limits run on them."""
    limits = Limits(max_length=6, max_prefix=10, max_nbest=2)
    engine = with_captured_loop(Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json,
                                                      limits=limits), sizes=(1, 8))
    d = engine.chunked
    assert reachable_steps(limits) == d.max_steps == 11 and reachable_steps(Limits()) == 64
    captured = d.graphs.captured
    assert max(k for key in captured if key != ("load",) and not key[1] for k in key[2:]) == (11 + 1 - 1) // d.chunk
    assert max(k for key in captured if key != ("load",) and key[1] for k in key[2:]) == (11 - 1) // d.chunk
    letters = "".join(c for c in engine.vocab.characters if c.isalpha())
    text = (letters * 4)[:10]
    one_shot = [GenerateRequest(prefix=text[:6], max_length=6), GenerateRequest(max_length=6, temperature=10.0, seed=1)]
    (full,), (sampled,) = engine.generate(one_shot)
    assert full == text[:6] and 1 <= len(sampled) <= 6
    for max_length in (1, 6):
        got = engine.session([("s", SessionRequest(text=text, max_length=max_length))])
        assert got[0]["text"] == text
        engine.session([("s", SessionRequest(close=True))])
    assert d.eager_chunks == 0
