"""The serving engine and the TorchServe handler in-process, with a stand-in context (no Java).

Greedy, seeded sampling, mixed batches (each request equals itself decoded alone), every class
of bad input (4xx + JSON error, ASCII phrase, the others in the batch unaffected), streaming,
sessions (answers equal decoding the typed text from scratch), the session store's bounds,
the fingerprint check, the archive's contents and the served config.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from core.contract import ONNX_GENERATE as GENERATE_FILE
from core.errors import ArtifactError
from core.request import make_rows
from export.tolerance import RTOL
from model.generate import TorchGenerator
from serve.engine import ONNX_GRAPH, TORCH, Engine
from serve.handler import DECODER_HEADER, PHRASES, CharRNNHandler
from serve.standin import SEQUENCE_ID, StandInContext
from serve.validation import GenerateRequest, Limits, RequestError
from serve.wire import DIGITS
from tests.conftest import Artifacts, assert_close

ROOT = Path(__file__).resolve().parents[1]

NDJSON = "application/x-ndjson"


def make_handler(model_dir: Path, mode: str = "generate", *, model_yaml: dict | None = None,
                 **handler_config) -> tuple[CharRNNHandler, StandInContext]:
    """A handler initialised by a stand-in context; `model_yaml` adds top-level model-config keys."""
    ctx = StandInContext(model_dir, model_yaml_config={"handler": {"mode": mode, **handler_config}, **(model_yaml or {})})
    handler = CharRNNHandler()
    handler.initialize(ctx)
    return handler, ctx


@pytest.fixture(scope="module", params=["single", "ensemble"])
def served(request) -> tuple[Artifacts, Path]:
    """(the export, what TorchServe unpacks its archive into) that the handler tests below serve:
    the tiny model, then the tiny ensemble (the same handler, with no special case)."""
    if request.param == "single":
        return request.getfixturevalue("tiny_artifacts"), request.getfixturevalue("model_dir")
    return request.getfixturevalue("tiny_ensemble"), request.getfixturevalue("ensemble_model_dir")


@pytest.fixture(scope="module")
def gen(served):
    return make_handler(served[1], "generate")


@pytest.fixture(scope="module")
def gen_torch(served):
    """The same handler with every request on the TorchScript loop (handler.one_graph: false)."""
    return make_handler(served[1], "generate", one_graph=False)


@pytest.fixture(scope="module")
def reference(served) -> TorchGenerator:
    """The pipeline's own generator (model.generate) over the same TorchScript file."""
    return TorchGenerator.from_torchscript(served[0].torchscript)


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def names_of(response) -> list[str]:
    assert response.status == 200, response.text
    assert response.headers.get("content-type") == "application/json"
    return json.loads(response.text)["names"]


def one(handler_ctx, payload) -> object:
    handler, ctx = handler_ctx
    return ctx.run(handler, [payload])[0]


# ---------------------------------------------------------------- one-shot


def test_greedy_is_deterministic_and_matches_the_pipeline_generator(gen, reference):
    for prefix in ("", "A", "Ma", "Jo"):
        first = names_of(one(gen, body(prefix=prefix)))
        assert first == names_of(one(gen, body(prefix=prefix)))
        assert len(first) == 1 and first[0].startswith(prefix)
        assert first == reference.generate_rows(make_rows(reference.vocab, prefix))


def test_defaults_and_an_already_parsed_body(gen):
    """{} is a valid request; TorchServe may also hand over an already-parsed JSON object."""
    assert names_of(one(gen, b"{}")) == names_of(one(gen, {}))
    assert names_of(one(gen, {"prefix": "A", "num": 2})) == names_of(one(gen, body(prefix="A", num=2)))


def test_sampling_with_a_seed_is_reproducible(gen, reference):
    req = {"prefix": "A", "num": 5, "temperature": 1.0, "seed": 1234}
    names = names_of(one(gen, body(**req)))
    assert names == names_of(one(gen, body(**req)))
    assert len(names) == 5 and all(n.startswith("A") for n in names)
    rows = make_rows(reference.vocab, "A", num=5, temperature=1.0, seed=1234)
    assert names == reference.generate_rows(rows)
    others = [names_of(one(gen, body(**{**req, "seed": s}))) for s in range(1, 6)]
    assert any(o != names for o in others), "different seeds never changed a name"


def test_top_k_1_is_greedy(gen):
    greedy = names_of(one(gen, body(prefix="Ma", num=3, search="greedy")))
    assert names_of(one(gen, body(prefix="Ma", num=3, temperature=1.5, top_k=1, seed=9))) == greedy


def test_max_length_caps_the_name(gen):
    for max_length in (1, 2, 3, 5):
        names = names_of(one(gen, body(prefix="", max_length=max_length, num=4, temperature=2.0, seed=3)))
        assert all(1 <= len(n) <= max_length for n in names)
    assert names_of(one(gen, body(prefix="Ana", max_length=3))) == ["Ana"]


MIXED = [
    {"prefix": "A"},
    {"prefix": "Jo", "num": 3, "temperature": 0.9, "seed": 7},
    {"prefix": "", "max_length": 4, "num": 2},
    {"prefix": "Ma", "temperature": 1.3, "top_k": 3, "seed": 42, "num": 4},
    {"prefix": "Helena", "max_length": 6},
    {"num": 2, "temperature": 0.5, "seed": 0},
    {"prefix": "Z", "max_length": 30, "temperature": 2.0, "seed": 99},
]


def test_a_mixed_batch_equals_each_request_decoded_alone(gen):
    handler, ctx = gen
    batch = ctx.run(handler, [body(**r) for r in MIXED])
    alone = [ctx.run(handler, [body(**r)])[0] for r in MIXED]
    assert [names_of(r) for r in batch] == [names_of(r) for r in alone]
    assert [len(names_of(r)) for r in batch] == [r.get("num", 1) for r in MIXED]


def test_greedy_requests_run_on_the_one_graph_decoder_with_the_torchscript_names(gen, gen_torch, reference):
    """On CPU the greedy, non-streamed requests of a batch go to charrnn_generate.onnx and the
    rest to the TorchScript loop; every answer equals the TorchScript-only handler's: the same
    names, and log-probabilities (the graph's own, the TorchScript step's scores there) equal to
    the export's relative tolerance."""
    assert gen[0].engine.greedy is not None and gen_torch[0].engine.greedy is None
    vocab = reference.vocab
    batch = [body(prefix=c) for c in vocab.characters[:20]] + [
        body(), body(num=3, search="greedy"), body(prefix="Ma", max_length=3), body(prefix="J", max_length=1),
        body(prefix="A", temperature=0.8, seed=5, num=2), body(prefix="B", top_k=1, temperature=1.0, seed=1),
        body(prefix="C", stream=True), body(prefix="D", max_length=30)]
    got, want = gen[1].run(gen[0], batch), gen_torch[1].run(gen_torch[0], batch)
    assert [r.status for r in got] == [r.status for r in want] == [200] * len(batch)
    for g, w in zip(got, want):
        g_answer, w_answer = (json.loads(r.streamed.decode().splitlines()[-1] if r.chunks else r.text) for r in (g, w))
        assert g_answer["names"] == w_answer["names"]
        assert g_answer["logprobs"] == pytest.approx(w_answer["logprobs"], rel=RTOL, abs=2e-6)  # + 6-decimal rounding
        assert set(g_answer) == set(w_answer)
    greedy = gen[0].engine.greedy
    calls = []
    original = greedy.decode_scored
    greedy.decode_scored = lambda rows: calls.append(len(rows)) or original(rows)
    try:
        gen[1].run(gen[0], batch)
    finally:
        del greedy.decode_scored
    assert calls == [20 + 1 + 3 + 1 + 1 + 1]  # one run for every greedy row that does not stream


def test_the_one_graph_decoder_must_come_from_the_same_export(model_dir, tiny_artifacts, tmp_path):
    import onnx

    from core import integrity, manifest
    from export.generate_graph import build_generate_model

    step = onnx.load(str(tiny_artifacts.onnx))
    meta = {p.key: p for p in step.metadata_props}
    vocab = json.loads(meta[manifest.VOCAB_KEY].value)
    vocab["fingerprint"] = "0123456789abcdef"
    meta[manifest.VOCAB_KEY].value = json.dumps(vocab)
    other = tmp_path / "model"
    shutil.copytree(model_dir, other)
    (other / "charrnn_generate.onnx").write_bytes(integrity.seal_onnx(build_generate_model(step).SerializeToString()))
    with pytest.raises(ArtifactError, match="not from the same export"):
        make_handler(other)
    handler, _ = make_handler(other, "session")  # the session model does not load it
    assert handler.engine.greedy is None


def test_the_decoder_header_names_the_decoder_that_ran(gen, gen_torch, monkeypatch):
    """X-CharRNN-Decoder on every one-shot answer: onnx-graph exactly when charrnn_generate.onnx
    decoded the request, torch when the TorchScript loop did (both spied on, request by request);
    a refused request carries none."""
    handler, ctx = gen
    ran = []
    greedy, loop = handler.engine.greedy, handler.engine.chunked
    graph, run = greedy.decode_scored, loop.run
    monkeypatch.setattr(greedy, "decode_scored", lambda rows: ran.append(ONNX_GRAPH) or graph(rows))
    monkeypatch.setattr(loop, "run", lambda *a, **k: ran.append(TORCH) or run(*a, **k))
    cases = [body(prefix="Ma"), body(), body(num=3, max_length=4, search="greedy"), body(prefix="A", temperature=0.8, seed=5),
             body(prefix="B", top_k=1, temperature=1.0, seed=1), body(prefix="C", stream=True)]
    for raw in cases:
        ran.clear()
        r = ctx.run(handler, [raw])[0]
        assert r.status == 200 and ran == [r.headers[DECODER_HEADER]], (raw, r.headers, ran)
    ran.clear()
    batch = ctx.run(handler, cases + [b"not json"])
    assert [r.headers.get(DECODER_HEADER) for r in batch] == [ONNX_GRAPH] * 3 + [TORCH] * 3 + [None]
    assert sorted(ran) == [ONNX_GRAPH, TORCH]  # one call per decoder for the whole batch
    assert [r.headers[DECODER_HEADER] for r in gen_torch[1].run(gen_torch[0], cases)] == [TORCH] * len(cases)


def test_a_declared_one_graph_decoder_must_be_in_the_archive(model_dir, tmp_path):
    """handler.one_graph: true (what serve/archive.py packs it with) and no charrnn_generate.onnx:
    the worker refuses to start, naming the file, instead of falling back to the TorchScript
    loop. false serves without it; no declaration (a stand-in context) uses it only if there."""
    bare = tmp_path / "model"
    shutil.copytree(model_dir, bare)
    (bare / GENERATE_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"charrnn.mar: .*declares the one-graph decoder "
                                            r"\(handler.one_graph: true\) but .*/charrnn_generate.onnx is missing"):
        make_handler(bare, one_graph=True)
    assert make_handler(bare, one_graph=False)[0].engine.greedy is None
    assert make_handler(bare)[0].engine.greedy is None
    assert make_handler(model_dir, one_graph=True)[0].engine.greedy is not None
    with pytest.raises(ValueError, match="handler.one_graph must be true or false"):
        make_handler(model_dir, one_graph="yes")


def test_one_bad_request_does_not_fail_the_others(gen):
    handler, ctx = gen
    bodies = [body(**MIXED[0]), b"{nope", body(**MIXED[1]), body(prefix="A", num=True), body(**MIXED[3])]
    out = ctx.run(handler, bodies)
    assert [r.status for r in out] == [200, 400, 200, 400, 200]
    good = [names_of(ctx.run(handler, [body(**r)])[0]) for r in (MIXED[0], MIXED[1], MIXED[3])]
    assert [names_of(out[i]) for i in (0, 2, 4)] == good


BAD = [  # (raw body, status, what the error must name)
    (b"not json", 400, "not valid JSON"),
    (b'{"prefix": "A",}', 400, "not valid JSON"),
    (b"\xff\xfe{}", 400, "UTF-8"),
    (b"", 400, "empty"),
    (b"   ", 400, "empty"),
    (b"[1, 2]", 400, "JSON object, got an array"),
    (b'"A"', 400, "JSON object, got a string"),
    (b"null", 400, "empty"),
    (b"42", 400, "JSON object, got a number"),
    (b'{"prefix": 1}', 400, "'prefix' must be a string"),
    (b'{"prefix": null}', 400, "'prefix' must be a string"),
    (b'{"num": "3"}', 400, "'num' must be an integer, got a string"),
    (b'{"num": true}', 400, "'num' must be an integer, got a boolean"),
    (b'{"num": 2.0}', 400, "'num' must be an integer, got a number"),
    (b'{"max_length": [5]}', 400, "'max_length' must be an integer, got an array"),
    (b'{"temperature": "hot"}', 400, "'temperature' must be a number"),
    (b'{"temperature": false}', 400, "'temperature' must be a number, got a boolean"),
    (b'{"stream": 1}', 400, "'stream' must be true or false"),
    (b'{"seed": 1.5}', 400, "'seed' must be an integer"),
    (b'{"colour": "blue"}', 400, "unknown field(s) 'colour'"),
    (b'{"prefix": "A", "Prefix": "B"}', 400, "'Prefix'"),
    (b'{"temperature": NaN}', 400, "NaN"),
    (b'{"temperature": Infinity}', 400, "Infinity"),
    (b'{"temperature": -Infinity}', 400, "-Infinity"),
    (b'{"temperature": 1e999}', 400, "finite"),
    (b'{"temperature": -0.5}', 400, "'temperature' must be between"),
    (b'{"temperature": 10.5}', 400, "'temperature' must be between"),
    (b'{"top_k": -1}', 400, "'top_k' must be between"),
    (b'{"top_k": 100000}', 400, "'top_k' must be between"),
    (b'{"seed": -1}', 400, "'seed' must be between"),
    (b'{"seed": 4294967296}', 400, "'seed' must be between"),
    (b'{"num": 0}', 400, "'num' must be between 1 and 64"),
    (b'{"num": 65}', 400, "'num' must be between 1 and 64"),
    (b'{"num": 100000000000000000000000}', 400, "'num' must be between"),
    (b'{"max_length": 0}', 400, "'max_length' must be between 1 and 64"),
    (b'{"max_length": 65}', 400, "'max_length' must be between 1 and 64"),
    (b'{"prefix": "Ana", "max_length": 2}', 400, "shorter than the prefix"),
    (json.dumps({"prefix": "A" * 33}).encode(), 400, "33 characters long; the limit is 32"),
    (json.dumps({"prefix": "A" * 1000}).encode(), 400, "the limit is 32"),
    (json.dumps({"prefix": "A€1"}).encode(), 400, "'1' (U+0031), '€' (U+20AC)"),
    (json.dumps({"prefix": "An\na"}, ensure_ascii=False).encode(), 400, "'\\n' (U+000A)"),
    (b'{"prefix": "\\ud800"}', 400, "U+D800"),
    (b"[" * 5000, 400, "nested too deeply"),
    (b'{"prefix": "' + b"A" * 20000 + b'"}', 413, "the limit is 16384"),
]


@pytest.mark.parametrize(("raw", "status", "needle"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_is_refused_with_a_4xx_and_a_json_error(gen, raw, status, needle):
    handler, ctx = gen
    good = body(prefix="A")
    out = ctx.run(handler, [good, raw, good])  # the stand-in raises on a non-ASCII phrase
    assert out[1].status == status
    assert out[1].phrase.isascii() and out[1].phrase
    assert out[1].headers.get("content-type") == "application/json"
    error = json.loads(out[1].text)["error"]
    assert needle in error, error
    assert out[0].status == out[2].status == 200 and names_of(out[0]) == names_of(out[2])


def test_form_fields_instead_of_json_are_refused(gen):
    handler, ctx = gen
    out = ctx.run_rows(handler, [{'{"prefix": "A"}': b""}, {"body": body(prefix="A")}])
    assert out[0].status == 400 and "Content-Type: application/json" in json.loads(out[0].text)["error"]
    assert out[1].status == 200


def test_an_already_parsed_nan_is_refused(gen):
    """With decode_input_request on, TorchServe's json.loads turns NaN into a float."""
    for value in (float("nan"), float("inf")):
        r = one(gen, {"temperature": value})
        assert r.status == 400 and "finite" in json.loads(r.text)["error"]


def test_status_phrases_are_ascii():
    assert all(p.isascii() and p for p in PHRASES.values())


# ---------------------------------------------------------------- streaming


def parse_stream(response) -> tuple[dict[int, str], list[str]]:
    lines = [json.loads(line) for line in response.streamed.decode("utf-8").splitlines()]
    assert lines[-1]["done"] is True
    text: dict[int, str] = {}
    for line in lines[:-1]:
        text[line["index"]] = text.get(line["index"], "") + line["char"]
    return text, lines[-1]["names"]


def test_streaming_sends_each_character_then_the_names(gen):
    handler, ctx = gen
    req = {"prefix": "Ma", "num": 3, "temperature": 1.0, "seed": 5}
    streamed, plain = ctx.run(handler, [body(**req, stream=True), body(**req)])
    assert streamed.status == 200 and streamed.headers["content-type"] == NDJSON
    assert len(streamed.chunks) >= 3  # one chunk per step, not one at the end
    text, names = parse_stream(streamed)
    assert names == names_of(plain) and not plain.chunks
    assert [text[i] for i in range(3)] == names


def test_a_streamed_request_in_a_batch_leaves_the_others_alone(gen):
    handler, ctx = gen
    out = ctx.run(handler, [body(prefix="A"), body(prefix="Jo", stream=True), b"{", body(prefix="Jo")])
    assert [r.status for r in out] == [200, 200, 400, 200]
    assert not out[0].chunks and not out[2].chunks and not out[3].chunks
    assert parse_stream(out[1])[1] == names_of(out[3])


# ---------------------------------------------------------------- sessions


@pytest.fixture(scope="module")
def sess(served):
    return make_handler(served[1], "session")


def session_call(handler_ctx, sid: str | None, payload: dict | bytes):
    """One request alone in its batch; `sid` None: no session header (a new session)."""
    handler, ctx = handler_ctx
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return ctx.run(handler, [raw], [{SEQUENCE_ID: sid} if sid is not None else {}])[0]


@torch.inference_mode()
def scratch_next(engine: Engine, text: str, k: int) -> list[tuple[str, float]]:
    """Next-character distribution after `text`, by running the step over it from scratch."""
    ids = engine.vocab.encode(text)
    hidden = torch.zeros(engine.hidden_shape[0], 1, engine.hidden_shape[1])
    token = engine.vocab.bos_id
    for i in ids:
        _, hidden = engine.step(torch.tensor([token]), hidden)
        token = i
    logits, _ = engine.step(torch.tensor([token]), hidden)
    if not text:
        logits[0, engine.vocab.eos_id] = float("-inf")
    top = torch.softmax(logits[0], 0).topk(k)
    return [("" if s == engine.vocab.eos_id else engine.vocab.symbols[s], p)
            for p, s in zip(top.values.tolist(), top.indices.tolist())]


def check_answer(engine: Engine, answer: dict, text: str, k: int = 5, max_length: int = 24) -> None:
    assert answer["text"] == text
    scratch = engine.generate([GenerateRequest(prefix=text, max_length=max(max_length, len(text)))])[0][0]
    assert answer["completion"] == scratch
    expected = scratch_next(engine, text, k)
    assert [c["char"] for c in answer["next"]] == [c for c, _ in expected]
    # by the parity rule: the session's step ran its whole wave, the scratch run one row
    assert_close([c["p"] for c in answer["next"]], [p for _, p in expected], text, rounding=10.0**-DIGITS)


def test_a_session_typed_character_by_character_matches_decoding_from_scratch(sess):
    handler, _ = sess
    r = session_call(sess, "s-typing", {"text": "M"})
    assert r.status == 200 and r.headers[SEQUENCE_ID] == "s-typing"
    check_answer(handler.engine, json.loads(r.text), "M")
    text = "M"
    for ch in "aria C":
        text += ch
        r = session_call(sess, "s-typing", {"append": ch})
        assert r.status == 200, r.text
        check_answer(handler.engine, json.loads(r.text), text)
    # the whole text again, extended
    r = session_call(sess, "s-typing", {"text": text + "l", "top_k": 3, "max_length": 30})
    check_answer(handler.engine, json.loads(r.text), text + "l", k=3, max_length=30)
    # an edit (backspaces)
    r = session_call(sess, "s-typing", {"text": "Mar"})
    check_answer(handler.engine, json.loads(r.text), "Mar")
    # no text at all: the current text's answer again
    r = session_call(sess, "s-typing", {})
    check_answer(handler.engine, json.loads(r.text), "Mar")


def test_a_request_without_a_session_id_opens_a_new_session(sess):
    handler, _ = sess
    first = session_call(sess, None, {"append": "Jo"})
    assert first.status == 200 and first.headers["content-type"] == "application/json"
    sid = first.headers[SEQUENCE_ID]
    answer = json.loads(first.text)
    assert answer["session"] == sid and sid.startswith("s-") and len(sid) > 30
    check_answer(handler.engine, answer, "Jo")
    r = session_call(sess, sid, {"append": "a"})  # the new id works for follow-ups
    assert r.status == 200 and json.loads(r.text)["text"] == "Joa"
    second = session_call(sess, None, {"text": "Jo"})
    assert second.headers[SEQUENCE_ID] != sid  # every new session gets its own id
    assert json.loads(second.text)["next"] == answer["next"]


def test_an_empty_session_suggests_first_letters(sess):
    handler, _ = sess
    answer = json.loads(session_call(sess, None, {}).text)
    check_answer(handler.engine, answer, "")
    assert all(c["char"] for c in answer["next"])  # no end-of-name before the first letter
    probs = [c["p"] for c in answer["next"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_end_of_name_is_an_empty_char(sess):
    answer = json.loads(session_call(sess, "s-end", {"text": "Ana", "top_k": 20}).text)
    assert "" in [c["char"] for c in answer["next"]]  # "Ana" is a complete name in the corpus


def test_sessions_in_one_batch_and_the_same_session_twice(sess):
    handler, ctx = sess
    ctx.run(handler, [body(text="Jo"), body(text="Ra")], [{SEQUENCE_ID: "b1"}, {SEQUENCE_ID: "b2"}])
    out = ctx.run(handler, [body(append="a"), body(append="f"), body(append="o"), b"{", body(append="a")],
                  [{SEQUENCE_ID: "b1"}, {SEQUENCE_ID: "b2"}, {SEQUENCE_ID: "b1"}, {SEQUENCE_ID: "b2"},
                   {SEQUENCE_ID: "b2"}])
    assert [r.status for r in out] == [200, 200, 200, 400, 200]
    texts = [json.loads(r.text)["text"] for r in out if r.status == 200]
    assert texts == ["Joa", "Raf", "Joao", "Rafa"]  # in order, per session
    for r in out:
        if r.status == 200:
            answer = json.loads(r.text)
            check_answer(handler.engine, answer, answer["text"])


def test_append_for_an_unknown_session_says_to_send_text(sess):
    r = session_call(sess, "s-never-opened", {"append": "a"})
    assert r.status == 404 and r.phrase == "Not Found" and r.headers[SEQUENCE_ID] == "s-never-opened"
    error = json.loads(r.text)["error"]
    assert "'s-never-opened' is not known here" in error and "send the whole 'text'" in error
    r = session_call(sess, "s-never-opened", {"text": "Lu"})  # the whole text rebuilds it
    assert r.status == 200 and json.loads(r.text)["text"] == "Lu"
    r = session_call(sess, "s-never-opened", {"close": True})
    assert r.status == 200 and json.loads(r.text) == {"session": "s-never-opened", "closed": True}
    assert session_call(sess, "s-never-opened", {"append": "c"}).status == 404
    r = session_call(sess, "s-never-opened", {"text": "Luc"})  # a closed id with its text: fine
    assert r.status == 200 and json.loads(r.text)["text"] == "Luc"


SESSION_BAD = [
    ({"text": "A", "append": "b"}, "not both"),
    ({"close": True, "text": "A"}, "'close' must be sent alone"),
    ({"close": "yes"}, "'close' must be true or false"),
    ({"text": 5}, "'text' must be a string"),
    ({"append": "€"}, "'€' (U+20AC)"),
    ({"top_k": 21}, "'top_k' must be between 0 and 20"),
    ({"top_k": True}, "'top_k' must be an integer"),
    ({"max_length": 0}, "'max_length' must be between"),
    ({"prefix": "A"}, "unknown field(s) 'prefix'"),
    ({"text": "A" * 33}, "the limit is 32"),
]


@pytest.mark.parametrize(("payload", "needle"), SESSION_BAD, ids=[f"bad{i}" for i in range(len(SESSION_BAD))])
def test_bad_session_requests_are_refused_and_the_session_lives_on(sess, payload, needle):
    sid = f"s-bad-{needle[:8]}"
    assert session_call(sess, sid, {"text": "Ma"}).status == 200
    r = session_call(sess, sid, payload)
    assert r.status == 400 and needle in json.loads(r.text)["error"] and r.headers[SEQUENCE_ID] == sid
    r = session_call(sess, sid, {"append": "r"})
    assert r.status == 200 and json.loads(r.text)["text"] == "Mar"


def test_a_session_cannot_grow_past_the_limit(sess):
    assert session_call(sess, "s-long", {"text": "A" * 30}).status == 200
    r = session_call(sess, "s-long", {"append": "aaa"})
    assert r.status == 400 and "would be 33 characters" in json.loads(r.text)["error"]
    assert json.loads(session_call(sess, "s-long", {"append": "aa"}).text)["text"] == "A" * 30 + "aa"


def test_an_invalid_session_id_is_refused(sess):
    r = session_call(sess, "x" * 300, {"text": "A"})
    assert r.status == 400 and "invalid session id" in json.loads(r.text)["error"]
    assert SEQUENCE_ID not in r.headers
    assert session_call(sess, "tab\there", {"text": "A"}).status == 400


def test_the_state_cache_stays_on_the_engine_device(sess):
    handler, _ = sess
    session_call(sess, "s-device", {"text": "Jo"})
    states = handler.engine.sessions.states
    assert "Jo" in states and states.states.device == handler.engine.device
    assert tuple(states.states.shape[1:]) == handler.engine.hidden_shape


def test_the_handler_reads_its_session_bounds(model_dir):
    handler, ctx = make_handler(model_dir, "session", sessions={"max": 3, "idle_seconds": 60, "state_cache_mib": 0.001,
                                                                "answer_cache_mib": 0.01})
    store = handler.engine.sessions
    assert store.texts.max_sessions == 3 and store.texts.idle_seconds == 60
    assert store.states.nbytes <= 0.001 * 2**20 and store.answers.max_bytes == int(0.01 * 2**20)
    for i in range(5):
        assert ctx.run(handler, [body(text="A")], [{SEQUENCE_ID: f"s{i}"}])[0].status == 200
    assert len(store.texts) == 3 and "s0" not in store.texts
    r = ctx.run(handler, [body(append="n")], [{SEQUENCE_ID: "s0"}])[0]
    assert r.status == 404
    with pytest.raises(ValueError, match="open_max"):
        make_handler(model_dir, "session", sessions={"open_max": 24})


# ---------------------------------------------------------------- start-up and packaging


def test_a_vocab_json_from_another_run_refuses_to_start(model_dir, tmp_path):
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    data = json.loads((bad / "vocab.json").read_text())
    data["fingerprint"] = "0123456789abcdef"
    (bad / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="vocab.json is not from the same export as the vocab.json inside"):
        Engine.from_artifacts(bad / "charrnn.torchscript.pt", bad / "vocab.json")
    with pytest.raises(ArtifactError, match="different training runs"):
        make_handler(bad)
    data["fingerprint"] = json.loads((model_dir / "vocab.json").read_text())["fingerprint"]
    data["symbols"] = data["symbols"][:-1]  # same fingerprint field, different vocabulary
    (bad / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"vocab.json lists other symbols than .* \(symbols\)"):
        make_handler(bad)
    (bad / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match="cannot read"):
        make_handler(bad)


def test_limits_and_mode_come_from_the_model_config(model_dir):
    handler, ctx = make_handler(model_dir, limits={"max_num": 2, "max_prefix": 3})
    assert handler.engine.limits == Limits(max_num=2, max_prefix=3)
    assert json.loads(ctx.run(handler, [body(num=3)])[0].text)["error"].endswith("got 3")
    with pytest.raises(ValueError, match="unknown limits"):
        make_handler(model_dir, limits={"max_nmu": 2})
    with pytest.raises(ValueError, match="handler.mode"):
        make_handler(model_dir, "stream")


def test_the_worker_runs_on_its_gpu_id_made_the_current_device(monkeypatch):
    """On a multi-GPU host each TorchServe worker gets its gpu_id: the handler decodes there and
    makes it the current CUDA device (the graphs' pool and streams are the current device's)."""
    made_current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    assert CharRNNHandler._device("3") == torch.device("cuda", 3) and made_current == [torch.device("cuda", 3)]
    assert CharRNNHandler._device(None) == CharRNNHandler._device(-1) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert CharRNNHandler._device(0) == torch.device("cpu") and len(made_current) == 1


def test_request_error_carries_its_status():
    assert RequestError("x").status == 400 and RequestError("y", 404).status == 404


def module_file(name: str) -> Path | None:
    """The repository file of module `name` (a package's __init__.py), or None if it is not ours."""
    base = ROOT.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def imported_names(path: Path) -> set[str]:
    """Every module an import statement of `path` names, at any depth (function bodies too);
    `from a import b` names both `a` and `a.b` (b may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"  # the walk resolves absolute names
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def imports_of(module: str) -> set[str]:
    """The modules `module` imports, followed through every repository module (and package
    __init__) on the way: what importing it can load."""
    found, todo, seen = set(), [module], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for package in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            path = module_file(package)
            if path is None or package in seen:
                continue
            seen.add(package)
            names = imported_names(path)
            found |= names
            todo += sorted(names)
    return found


def test_the_generate_engine_is_torchserve_free():
    """serve.engine must import and run without TorchServe (`ts`), directly or through any of
    the project modules it imports, so the engine is testable and usable on its own."""
    names = imports_of("serve.engine")
    assert {"torch", "model.decode", "core.noise", "core.vocab"} <= names  # the walk follows the project
    assert not {n for n in names if n == "ts" or n.startswith("ts.")}


def test_the_archive_ships_the_handler_and_its_imports(tiny_artifacts, tiny_card, tmp_path):
    from core.contract import MODEL_CARD
    from serve.archive import build_archives, check_archive, shipped_modules

    shipped = {str(p) for p in shipped_modules()}
    assert {"serve/engine.py", "serve/__init__.py", "model/decode.py", "core/request.py",
            "core/vocab.py", "model/torchscript.py", "serve/validation.py", "serve/sessions.py",
            "serve/artifacts.py", "serve/wire.py", "serve/answers.py"} <= shipped
    # only what the handler needs: no exporter, no parity check, no server wrapper or client
    assert not {"export/torchscript.py", "export/parity.py", "export/onnx_step.py", "serve/server.py",
                "serve/client.py"} & shipped, sorted(shipped)
    assert "runtime/greedy.py" in shipped and not any(p.startswith("export/") for p in shipped), sorted(shipped)
    assert not any(p.startswith("tests") or p == "serve/handler.py" for p in shipped)
    mars = build_archives(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, tmp_path,
                          greedy_graph=tiny_artifacts.dir / "charrnn_generate.onnx", card=tiny_card)
    with zipfile.ZipFile(mars[0]) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        config = z.read("model-config.yaml").decode()
        sums = json.loads(z.read("checksums.json"))
    assert {"handler.py", "charrnn.torchscript.pt", "vocab.json", "model-config.yaml",
            "charrnn_generate.onnx", "serve/engine.py", "model/decode.py"} <= names
    assert "charrnn_generate.onnx" in json.dumps(sums)
    with zipfile.ZipFile(mars[1]) as z:  # the session model has no use for it
        assert "charrnn_generate.onnx" not in z.namelist()
    for mar in mars:  # the model card travels in both, checksummed like every other file
        with zipfile.ZipFile(mar) as z:
            assert z.read(MODEL_CARD) == tiny_card.read_bytes()
            assert MODEL_CARD in json.loads(z.read("checksums.json"))["files"]
        assert check_archive(mar)
    assert manifest["model"]["handler"] == "handler.py"
    assert manifest["model"]["serializedFile"] == "charrnn.torchscript.pt"
    assert manifest["model"]["configFile"] == "model-config.yaml"
    assert config == (Path(__file__).resolve().parents[1] / "serve" / "config" / "charrnn.yaml").read_text()
    assert yaml.safe_load(config)["handler"]["one_graph"] is True  # the declaration the worker enforces


def test_make_rebuilds_the_archives_when_a_shipped_serve_module_changes():
    """`make archive` depends on SOURCES_SERVE (the Makefile) for serve/: it must name the handler
    and every serve/ module the archive ships, or an edit would leave a stale .mar in place."""
    from serve.archive import shipped_modules

    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^SOURCES_SERVE\s*:=((?:.*\\\n)*.*)$", text, re.MULTILINE)
    assert match, "no SOURCES_SERVE in the Makefile"
    listed = set(match.group(1).replace("\\\n", " ").split())
    shipped = {str(p) for p in shipped_modules() if p.parts[0] == "serve"} | {"serve/handler.py"}
    assert shipped - listed == set()


def test_a_one_graph_archive_is_built_and_checked_whole(tiny_artifacts, tmp_path):
    """The one-shot config declares the one-graph decoder: a build without it is refused, and an
    archive missing it is refused at load (listed in checksums.json or not), naming the file."""
    from serve.archive import build_archives, check_archive
    from soak.corrupt import mar_without_member

    with pytest.raises(SystemExit, match=r"serve/config/charrnn.yaml declares the one-graph decoder"):
        build_archives(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, tmp_path / "none")
    assert not (tmp_path / "none").exists() or not list((tmp_path / "none").glob("*.mar"))
    mar = build_archives(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, tmp_path, models=("charrnn",),
                         greedy_graph=tiny_artifacts.dir / GENERATE_FILE)[0]
    assert check_archive(mar)
    for fix_checksums, needle in ((True, "declares the one-graph decoder"),
                                  (False, "charrnn_generate.onnx is missing: the archive is damaged")):
        bad = tmp_path / f"without-{fix_checksums}.mar"
        mar_without_member(mar, bad, GENERATE_FILE, fix_checksums=fix_checksums)
        with pytest.raises(ArtifactError, match=needle) as info:
            check_archive(bad)
        assert str(bad) in str(info.value)


def test_the_served_configs_batch_and_the_session_model_has_no_sequence_slots():
    config = yaml.safe_load((Path("serve/config/charrnn_session.yaml")).read_text())
    # sessions are rebuilt from their text: no TorchServe sequence batching, no admission limit
    assert not {"sequenceBatching", "continuousBatching", "maxNumSequence", "sequenceMaxIdleMSec"} & set(config)
    assert set(config["handler"]["sessions"]) == {"max", "idle_seconds", "state_cache_mib", "answer_cache_mib"}
    assert config["maxWorkers"] == 1  # `append` reads the session's text in the worker's memory
    assert config["maxBatchDelay"] >= 1 and config["batchSize"] > 1
    one_shot = yaml.safe_load((Path("serve/config/charrnn.yaml")).read_text())
    assert one_shot["maxBatchDelay"] >= 1 and one_shot["handler"]["threads"] == 1


def test_the_served_config_is_loopback_token_on_model_api_off(tmp_path):
    from serve.config_properties import Ports, render_config

    text = render_config(tmp_path / "store", Ports(18080, 18081, 18082))
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["inference_address"] == "http://127.0.0.1:18080"
    assert props["management_address"] == "http://127.0.0.1:18081"
    assert props["metrics_address"] == "http://127.0.0.1:18082"
    assert props["disable_token_authorization"] == "false"
    assert props["enable_model_api"] == "false"
    assert props["allowed_urls"] == f"file://{(tmp_path / 'store').resolve()}/[^/]*[.]mar"


def test_extra_properties_replace_the_shipped_value_or_are_appended_and_cannot_inject(tmp_path):
    """render_config's `extra` (the bench's sweep, tests): a shipped property is changed where it
    stands (one line for the name, never a second one that Java's last-wins would hide), a new
    one is appended below a comment; a value cannot smuggle in a second property."""
    from serve.config_properties import Ports, render_config

    ports = Ports(18080, 18081, 18082, 17070, 17071)
    shipped = render_config(tmp_path, ports)
    text = render_config(tmp_path, ports, {"enable_model_api": True, "token_expiration_min": 0.1})
    props = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    assert [v for k, v in props if k == "enable_model_api"] == ["true"]
    assert props[-1] == ["token_expiration_min", "0.1"]
    assert "# Changed for this instance by its caller (shipped: false):\nenable_model_api=true" in text
    assert "# Set for this instance by its caller (not the shipped configuration):\ntoken_expiration_min=0.1" in text
    # everything else as shipped, in the same order
    assert [line for line in text.splitlines() if "enable_model_api" not in line and "for this instance" not in line
            and "token_expiration" not in line] == [line for line in shipped.splitlines() if "enable_model_api" not in line]
    for bad in ({"vmargs": "-Xmx1g\nenable_model_api=true"}, {"a=b": "c"}, {"x": "C:\\temp"}, {"": "1"}):
        with pytest.raises(ValueError, match="refusing property"):
            render_config(tmp_path, ports, bad)


def test_gpu_check_skips_cleanly_without_cuda(capsys, tiny_artifacts):
    from tools import gpu_check

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: run `make gpu-check` instead")
    assert gpu_check.main(["--model", str(tiny_artifacts.torchscript), "--vocab", str(tiny_artifacts.vocab_json)]) == 0
    assert "SKIPPED" in capsys.readouterr().out
    assert gpu_check.main(["--model", str(tiny_artifacts.torchscript), "--vocab", str(tiny_artifacts.vocab_json),
                           "--dry-run-on-cpu", "--seconds", "0.05"]) == 0
    assert "gpu-check passed" in capsys.readouterr().out
