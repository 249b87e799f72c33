"""n-best over HTTP: the handler in-process (answers, 4xx for bad values, the configured bound,
session completions) and a real TorchServe answering n-best and session requests."""

from __future__ import annotations

import json

import pytest

from export import parity
from serve.engine import NBEST, ONNX_GRAPH, TORCH, Engine
from serve.handler import DECODER_HEADER, CharRNNHandler
from serve.standin import SEQUENCE_ID, StandInContext
from serve.validation import GenerateRequest, SessionRequest
from serve.wire import DIGITS
from tests.test_serve_integration import one_thread, served, store  # noqa: F401 - the served fixture


def handler(model_dir, mode: str = "generate", **config) -> tuple[CharRNNHandler, StandInContext]:
    ctx = StandInContext(model_dir, model_yaml_config={"handler": {"mode": mode, **config}})
    h = CharRNNHandler()
    h.initialize(ctx)
    return h, ctx


@pytest.fixture(scope="module")
def engine(tiny_artifacts) -> Engine:
    return Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json)


def close_lists(got: list[float], want: list[float]) -> bool:
    """Answers' log-probabilities (rounded to DIGITS) against another path's: the parity rule."""
    return parity.close(want, got, rounding=10.0**-DIGITS)


def check_nbest(body: dict, answer: dict, want) -> None:
    names, logprobs = answer["names"], answer["logprobs"]
    assert names == want.names and close_lists(logprobs, want.logprobs), (body, answer)
    assert len(set(names)) == len(names) and logprobs == sorted(logprobs, reverse=True)
    assert all(n.startswith(body.get("prefix", "")) for n in names)
    assert answer["complete"] is True


def test_the_handler_answers_nbest_requests_with_logprobs(model_dir, engine):
    h, ctx = handler(model_dir)
    bodies = [{"prefix": "Ma", "num": 5}, {"prefix": "L", "search": "nbest"}, {"num": 3, "max_length": 4},
              {"prefix": "A"}, {"prefix": "A", "num": 3, "temperature": 0.8, "seed": 4}, {"num": 2, "search": "greedy"}]
    out = ctx.run(h, [json.dumps(b).encode() for b in bodies])
    assert [r.status for r in out] == [200] * len(bodies), [r.text for r in out]
    answers = [json.loads(r.text) for r in out]
    with one_thread():
        want = engine.answer([GenerateRequest(**b) for b in bodies])
    for body, answer, w in zip(bodies[:3], answers, want):
        check_nbest(body, answer, w)
    assert len(answers[0]["names"]) == 5 and len(answers[2]["names"]) == 3
    for body, answer, w in zip(bodies[3:], answers[3:], want[3:]):  # greedy / sampled: scored, no flag
        assert answer["names"] == w.names and close_lists(answer["logprobs"], w.logprobs)
        assert "complete" not in answer and len(answer["logprobs"]) == body.get("num", 1)
    assert answers[5]["names"][0] == answers[5]["names"][1]  # search "greedy": today's repeated name
    assert [r.headers[DECODER_HEADER] for r in out] == [NBEST] * 3 + [ONNX_GRAPH, TORCH, ONNX_GRAPH]


@pytest.mark.parametrize("body,words", [
    ({"num": 33}, ["'num'", "at most 32", "n-best"]),
    ({"num": 33, "search": "nbest"}, ["'num'", "at most 32"]),
    ({"search": "beam"}, ["'search'", "'nbest'"]),
    ({"search": 1}, ["'search'", "a number"]),
    ({"search": "nbest", "temperature": 0.5}, ["temperature 0"]),
    ({"search": "greedy", "temperature": 0.5}, ["temperature 0"]),
    ({"search": "nbest", "stream": True}, ["stream"]),
])
def test_bad_nbest_values_get_400_with_a_message(model_dir, body, words):
    h, ctx = handler(model_dir)
    (r,) = ctx.run(h, [json.dumps(body).encode()])
    assert r.status == 400, r.text
    message = json.loads(r.text)["error"]
    assert all(w in message for w in words), message


def test_the_configured_bound_flags_a_partial_sorted_list(model_dir, engine):
    h, ctx = handler(model_dir, limits={"max_expansions": 12, "nbest_width": 4})
    (r,) = ctx.run(h, [b'{"num": 20}'])
    assert r.status == 200
    answer = json.loads(r.text)
    assert answer["complete"] is False and len(answer["names"]) < 20
    assert answer["logprobs"] == sorted(answer["logprobs"], reverse=True)
    with one_thread():
        full = engine.answer([GenerateRequest(num=20)])[0]
    assert answer["names"] == full.names[: len(answer["names"])]  # what it returns is proven


def test_sessions_add_the_top_completions(model_dir, engine):
    h, ctx = handler(model_dir, "session")
    (r,) = ctx.run(h, [b'{"text": "Ma", "completions": 4}'], [{SEQUENCE_ID: "s1"}])
    answer = json.loads(r.text)
    with one_thread():
        want = engine.answer([GenerateRequest(prefix="Ma", num=4)])[0]
    assert [c["name"] for c in answer["completions"]] == want.names
    assert close_lists([c["logprob"] for c in answer["completions"]], want.logprobs)
    assert answer["completions_complete"] is True and answer["completion"]  # the greedy one stays
    (r,) = ctx.run(h, [b'{"append": "r", "completions": 0}'], [{SEQUENCE_ID: "s1"}])
    assert "completions" not in json.loads(r.text)
    (r,) = ctx.run(h, [b'{"append": "r", "completions": 11}'], [{SEQUENCE_ID: "s1"}])
    assert r.status == 400 and "'completions'" in json.loads(r.text)["error"]


# ---------------------------------------------------------------- a real TorchServe


def test_torchserve_answers_nbest_requests(served, engine):  # noqa: F811 - pytest fixture
    for body in ({"prefix": "Ma", "num": 5}, {"prefix": "", "num": 8}, {"prefix": "J", "search": "nbest"}):
        r = served.post("charrnn", json.dumps(body).encode())
        assert r.status_code == 200, r.text
        with one_thread():
            want = engine.answer([GenerateRequest(**body)])[0]
        check_nbest(body, r.json(), want)
    r = served.post("charrnn", b'{"prefix": "Ma"}')
    assert r.status_code == 200 and len(r.json()["logprobs"]) == 1
    r = served.post("charrnn", b'{"prefix": "Ma", "num": 40}')
    assert r.status_code == 400 and "at most 32" in r.json()["error"]
    r = served.post("charrnn", b'{"search": "nbest", "temperature": 1}')
    assert r.status_code == 400 and "temperature 0" in r.json()["error"]


def test_torchserve_sessions_carry_completions(served, engine):  # noqa: F811 - pytest fixture
    r = served.post("charrnn_session", b'{"text": "Jo", "completions": 3}')
    assert r.status_code == 200, r.text
    with one_thread():
        want = engine.session([("local", SessionRequest(text="Jo", completions=3))])[0]
    assert [c["name"] for c in r.json()["completions"]] == [c["name"] for c in want["completions"]]
    served.post("charrnn_session", b'{"close": true}', {SEQUENCE_ID: r.headers[SEQUENCE_ID]})


def test_the_fuzz_classes_for_nbest_get_the_statuses_they_expect(model_dir, engine):
    from soak.fuzz import CATEGORIES, Generator

    assert {"valid n-best", "bad n-best values"} <= set(CATEGORIES)
    gen, gen_ctx = handler(model_dir)
    sess, sess_ctx = handler(model_dir, "session")
    fuzz = Generator(engine, seed=5)
    seen = set()
    for category in ("valid n-best", "bad n-best values") * 25:
        case = fuzz.case(category)
        if case.path.endswith("charrnn_session"):
            (r,) = sess_ctx.run(sess, [case.body], [{}])
        else:
            (r,) = gen_ctx.run(gen, [case.body])
        assert r.status in case.expect, (case.body, r.text)
        if case.names is not None:
            assert json.loads(r.text)["names"] == case.names
        seen.add((category, r.status))
    assert seen == {("valid n-best", 200), ("bad n-best values", 400)}


def test_the_fuzz_harness_expects_what_the_handler_answers_for_every_valid_class(model_dir, engine):
    """make soak counts a valid answer as lost when it differs from the harness's expectation:
    the expectation must follow the same rules (n-best for several greedy names, the greedy loop
    when streamed), or the soak reports losses that are its own."""
    from soak.fuzz import Generator

    gen, gen_ctx = handler(model_dir)
    fuzz = Generator(engine, seed=11)
    several_streamed_greedy = 0
    for category in ("valid greedy", "valid sampled", "valid streamed", "valid n-best") * 30:
        case = fuzz.case(category)
        (r,) = gen_ctx.run(gen, [case.body])
        assert r.status == 200, (case.body, r.text)
        body = json.loads(case.body)
        if case.stream:
            names = json.loads(r.streamed.decode().splitlines()[-1])["names"]
            several_streamed_greedy += body.get("num", 1) > 1 and not body.get("temperature")
        else:
            names = json.loads(r.text)["names"]
        assert names == case.names, (category, case.body)
    assert several_streamed_greedy > 0  # the case that once went wrong was generated


def test_one_graph_answers_are_scored_by_their_own_run(model_dir, engine, monkeypatch):
    """Greedy answers of the one-graph decoder take their log-probabilities from its `logprob`
    output: no scoring pass (answers.scores is not called for them), the values those of the
    scoring pass over the TorchScript step, in any mix with other requests and caps (a name cut
    at its own max_length in a batch with a longer cap included)."""
    from serve import answers

    h, _ = handler(model_dir)
    graph_engine = h.engine
    requests = [GenerateRequest(prefix="A"), GenerateRequest(prefix="Ma", max_length=3), GenerateRequest(),
                GenerateRequest(prefix="L", max_length=40), GenerateRequest(prefix="Jo", max_length=2)]
    assert {graph_engine.decoder(r) for r in requests} == {ONNX_GRAPH}
    with one_thread():
        want = engine.answer(requests)  # TorchScript only: decoded, then scored by a second pass
    scored = []
    real = answers.scores
    monkeypatch.setattr(answers, "scores", lambda *a, **k: scored.append(a[2]) or real(*a, **k))
    with one_thread():
        got = graph_engine.answer(requests)
    assert scored == []  # no second pass
    for g, w in zip(got, want):
        assert g.names == w.names and close_lists(g.logprobs, w.logprobs)
    assert len(got[1].names[0]) == 3 and len(got[4].names[0]) == 2  # cut at their caps
    # a sampled request in the same batch: the torch route scores it as it decodes, so no route
    # runs a second pass, and its values are the scoring pass's
    mixed = requests + [GenerateRequest(prefix="A", temperature=0.8, seed=3)]
    with one_thread():
        got = graph_engine.answer(mixed)
    assert scored == []
    from model.nbest_torch import TorchStepper

    stepper = TorchStepper(graph_engine.step, graph_engine.hidden_shape, graph_engine.device)
    assert close_lists(got[-1].logprobs, real(stepper, graph_engine.vocab, got[-1].names))
    assert close_lists(got[0].logprobs, want[0].logprobs)
