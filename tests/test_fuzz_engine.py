"""Property-based tests (hypothesis) of the engine's and the handler's input handling.

- Arbitrary bytes, arbitrary JSON values (huge and non-finite numbers, deep nesting, control and
  non-ASCII characters, lone surrogates, unknown and mistyped fields), already-parsed objects and
  form-field rows never raise anything but the project's RequestError from the parsers, and the
  handler answers every request of a batch with a 4xx JSON error or names, never an exception.
- Valid requests always give `num` names that start with the prefix, use only vocabulary
  characters and respect max_length; sessions follow a simple model of what was typed.

Bounded and derandomized (the same examples on every run), so CI is stable.
"""

from __future__ import annotations

import ast
import json
import math
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.noise import MAX_SEED
from core.request import DEFAULT_MAX_LENGTH
from model.nbest import choose_search
from serve.engine import Engine
from serve.handler import PHRASES, CharRNNHandler
from serve.standin import SEQUENCE_ID, StandInContext
from serve.validation import (
    GENERATE_FIELDS,
    SESSION_FIELDS,
    GenerateRequest,
    Limits,
    RequestError,
    SessionRequest,
)
from tests.test_serve_handler import make_handler

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(FUZZ, max_examples=60)  # examples that decode


@pytest.fixture(scope="module")
def engine(tiny_artifacts) -> Engine:
    return Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json)


def handler_for(model_dir: Path, mode: str, **config) -> tuple[CharRNNHandler, StandInContext]:
    return make_handler(model_dir, mode, **config)


@pytest.fixture(scope="module")
def gen(model_dir):
    return handler_for(model_dir, "generate")


@pytest.fixture(scope="module")
def sess(model_dir):
    return handler_for(model_dir, "session", sessions={"max": 16, "idle_seconds": 120, "state_cache_mib": 0.002,
                                                       "answer_cache_mib": 0.02})


# ---------------------------------------------------------------- strategies

any_text = st.text(st.characters(codec=None, categories=None), max_size=40)  # incl. surrogates, controls
numbers = st.one_of(
    st.integers(), st.integers(min_value=-(10**80), max_value=10**80),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, -1, 2**31, 2**63, 2**64, 10**4000]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)), max_leaves=12)
field_names = st.one_of(st.sampled_from(sorted(GENERATE_FIELDS | SESSION_FIELDS)), any_text)
# objects whose keys are mostly real fields: the interesting cases reach the value checks
objects = st.dictionaries(field_names, json_values, max_size=6)


def deep(depth: int, kind: str) -> bytes:
    return {"list": b"[" * depth + b"]" * depth, "object": b'{"a":' * depth + b"1" + b"}" * depth,
            "open": b"[" * depth}[kind]


def encodings(value) -> list:
    """Ways a JSON value can reach the parser: raw bytes (NaN allowed), text, already parsed."""
    out = [value]
    try:
        text = json.dumps(value, allow_nan=True)
        out += [text, text.encode("utf-8"), json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")]
    except (ValueError, OverflowError):  # e.g. an integer of over 4300 digits
        pass
    return out


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(deep, st.integers(1, 20000), st.sampled_from(["list", "object", "open"])),
    st.builds(lambda n, b: b * n, st.integers(16000, 17000), st.sampled_from([b"A", b" ", b"\xff"])),
    st.builds(lambda d: b'{"num": ' + b"9" * d + b"}", st.integers(4290, 5000)),
    st.sampled_from([b"NaN", b"-Infinity", b'{"temperature": NaN}', b'{"seed": 1e400}', b"\xef\xbb\xbf{}",
                     b'{"prefix": "\\ud800"}', b'{"prefix": "A\\u0000"}', b'{"prefix": "A",}', b"{}" * 2]),
)


def check_only_request_errors(parse, payload) -> None:
    try:
        parse(payload)
    except RequestError as exc:
        assert exc.status in PHRASES, exc.status
        assert exc.message and json.dumps({"error": exc.message}, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- parsers


@FUZZ
@given(payload=raw_bodies)
@example(payload=b'{"num": ' + b"9" * 5000 + b"}")  # found by the HTTP fuzz: was a 503 for the batch
@example(payload=b"[" * 15000)
def test_raw_bodies_raise_nothing_but_request_errors(engine, payload):
    check_only_request_errors(engine.parse_generate, payload)
    check_only_request_errors(engine.parse_session, payload)


@FUZZ
@given(value=st.one_of(json_values, objects))
def test_json_values_raise_nothing_but_request_errors(engine, value):
    for payload in encodings(value):
        check_only_request_errors(engine.parse_generate, payload)
        check_only_request_errors(engine.parse_session, payload)


@FUZZ
@given(body=objects)
def test_an_accepted_request_is_within_the_limits(engine, body):
    try:
        r = engine.parse_generate(json.dumps(body, allow_nan=True))
    except (RequestError, ValueError, OverflowError):
        return
    lim = engine.limits
    assert set(body) <= GENERATE_FIELDS
    assert len(r.prefix) <= min(lim.max_prefix, r.max_length) and 1 <= r.max_length <= lim.max_length
    assert 1 <= r.num <= lim.max_num and 0 <= r.temperature <= lim.max_temperature
    engine.vocab.encode(r.prefix)  # every character in the vocabulary


# ---------------------------------------------------------------- the limits, at and over them

# the default limits, and small ones (as a handler's config may set them) so that a limit
# written into the parser as a number instead of read from Limits is noticed too
LIMIT_SETS = {"default": Limits(), "small": Limits(max_prefix=6, max_length=30, max_num=3, max_temperature=2.5,
                                                    max_candidates=4, max_body_bytes=512)}


@pytest.fixture(scope="module", params=list(LIMIT_SETS))
def limited(tiny_artifacts, request) -> Engine:
    return Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, limits=LIMIT_SETS[request.param])


def near(lo: int, hi: int) -> st.SearchStrategy[int]:
    """An integer in [lo, hi], mostly at or next to one of its ends."""
    edges = sorted({v for v in (lo, lo + 1, hi - 1, hi) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def past(limit: int, far: int) -> st.SearchStrategy[int]:
    """An integer in (limit, far], half the time limit + 1."""
    return st.one_of(st.just(limit + 1), st.integers(limit + 1, far))


def temperatures(hi: float) -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from([0, 0.0, 1, hi, math.nextafter(hi, 0.0), 5e-324]), st.floats(0.0, hi))


@st.composite
def prefixes(draw, engine: Engine, lo: int, hi: int) -> str:
    """lo..hi characters of the vocabulary, sometimes sent decomposed (NFD: longer than the
    limit in code points, within it once normalised)."""
    n = draw(near(lo, hi))
    text = "".join(draw(st.lists(st.sampled_from(engine.vocab.characters), min_size=n, max_size=n)))
    return unicodedata.normalize("NFD", text) if draw(st.booleans()) else text


def padded(body: dict, size: int | None) -> bytes:
    """The body as UTF-8 JSON, with trailing spaces up to `size` bytes when given."""
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return raw if size is None else raw + b" " * (size - len(raw))


@st.composite
def generate_bodies_within(draw, engine: Engine) -> tuple[dict, bytes]:
    """A valid generate body with its fields at or near the limits (each field may be left out)."""
    lim = engine.limits
    prefix = draw(prefixes(engine, 0, lim.max_prefix))
    length = len(unicodedata.normalize("NFC", prefix))
    body: dict = {"prefix": prefix} if prefix or draw(st.booleans()) else {}
    if length > DEFAULT_MAX_LENGTH or draw(st.booleans()):
        body["max_length"] = draw(near(max(1, length), lim.max_length))
    options = {"num": near(1, lim.max_num), "temperature": temperatures(lim.max_temperature),
               "top_k": near(0, len(engine.vocab)), "seed": st.one_of(st.none(), near(0, MAX_SEED)),
               "stream": st.booleans()}
    for key in draw(st.sets(st.sampled_from(sorted(options)))):
        body[key] = draw(options[key])
    if choose_search(None, body.get("num", 1), body.get("temperature", 0), body.get("stream", False)) == "nbest":
        body["num"] = min(body["num"], lim.max_nbest)  # the n-best search has its own cap
    size = len(padded(body, None))
    return body, padded(body, draw(st.one_of(st.none(), st.sampled_from([size, lim.max_body_bytes]))))


@st.composite
def generate_bodies_over(draw, engine: Engine) -> tuple[dict, bytes, str]:
    """A valid body with exactly one field just past its limit, and what the refusal must name."""
    lim = engine.limits
    body, _ = draw(generate_bodies_within(engine))
    body.setdefault("max_length", lim.max_length)  # room for the longest prefix
    field = draw(st.sampled_from(["prefix", "max_length", "num", "temperature", "top_k", "seed", "size"]))
    if field == "prefix":
        body["prefix"] = draw(prefixes(engine, lim.max_prefix + 1, 4 * lim.max_prefix + 1))
    elif field == "max_length":
        prefix = len(unicodedata.normalize("NFC", body.get("prefix", "")))
        body[field] = draw(st.one_of(past(lim.max_length, lim.max_length + 1000), st.integers(-5, min(0, prefix - 1)),
                                     st.integers(1, prefix - 1) if prefix > 1 else st.just(0)))
    elif field == "num":
        body[field] = draw(st.one_of(past(lim.max_num, 10**6), st.integers(-5, 0)))
    elif field == "temperature":
        hi = lim.max_temperature
        body[field] = draw(st.one_of(st.sampled_from([math.nextafter(hi, math.inf), -5e-324, -0.5, hi + 1]),
                                     st.floats(hi, 1e300, exclude_min=True), st.floats(-1e300, 0.0, exclude_max=True)))
    elif field == "top_k":
        body[field] = draw(st.one_of(past(len(engine.vocab), len(engine.vocab) + 100), st.integers(-100, -1)))
    elif field == "seed":
        body[field] = draw(st.one_of(past(MAX_SEED, 2**64), st.integers(-(2**32), -1)))
    if field == "size":
        raw = padded(body, draw(past(lim.max_body_bytes, lim.max_body_bytes + 64)))
        return body, raw, "size"
    return body, padded(body, None), field


@FUZZ
@given(data=st.data())
def test_every_body_within_the_limits_is_accepted_as_sent(limited, data):
    body, raw = data.draw(generate_bodies_within(limited))
    r = limited.parse_generate(raw)
    assert r == GenerateRequest(prefix=unicodedata.normalize("NFC", body.get("prefix", "")),
                                max_length=body.get("max_length", DEFAULT_MAX_LENGTH), num=body.get("num", 1),
                                temperature=float(body.get("temperature", 0.0)), top_k=body.get("top_k", 0),
                                seed=body.get("seed"), stream=body.get("stream", False))


@FUZZ
@given(data=st.data())
def test_a_body_one_step_over_a_limit_is_refused_naming_it(limited, data):
    body, raw, field = data.draw(generate_bodies_over(limited))
    with pytest.raises(RequestError) as refused:
        limited.parse_generate(raw)
    if field == "size":
        assert refused.value.status == 413 and str(limited.limits.max_body_bytes) in refused.value.message
    else:
        assert refused.value.status == 400 and repr(field) in refused.value.message, (body, refused.value.message)


def test_each_limit_is_accepted_at_its_value_and_refused_one_past_it(limited):
    """The boundaries themselves, every field, every run (the properties above add combinations)."""
    lim, letter = limited.limits, limited.vocab.characters[1]
    at = {"prefix": letter * lim.max_prefix, "max_length": lim.max_length, "num": lim.max_num,
          "temperature": lim.max_temperature, "top_k": len(limited.vocab), "seed": MAX_SEED}
    past_it = {**at, "prefix": letter * (lim.max_prefix + 1), "max_length": lim.max_length + 1,
               "num": lim.max_num + 1, "temperature": math.nextafter(lim.max_temperature, math.inf),
               "top_k": len(limited.vocab) + 1, "seed": MAX_SEED + 1}
    for field, value in at.items():
        body = {"max_length": lim.max_length, **({"search": "greedy"} if field == "num" else {}), field: value}
        assert getattr(limited.parse_generate(json.dumps(body)), field) == value, field
        with pytest.raises(RequestError, match=repr(field)):
            limited.parse_generate(json.dumps({**body, field: past_it[field]}))
    for field, low in (("max_length", {"max_length": 0}), ("num", {"num": 0}), ("top_k", {"top_k": -1}),
                       ("seed", {"seed": -1}), ("temperature", {"temperature": -5e-324}),
                       ("max_length", {"prefix": letter * 2, "max_length": 1})):
        with pytest.raises(RequestError, match=repr(field)):
            limited.parse_generate(json.dumps(low))
    two_bytes = {"prefix": "ã"}  # one byte more than characters: the byte count is the limit
    assert limited.parse_generate(padded(two_bytes, lim.max_body_bytes)) == GenerateRequest(prefix="ã")
    with pytest.raises(RequestError, match=str(lim.max_body_bytes)) as refused:
        limited.parse_generate(padded(two_bytes, lim.max_body_bytes + 1))
    assert refused.value.status == 413
    candidates = min(lim.max_candidates, len(limited.vocab))
    for key, value, over in (("text", letter * lim.max_prefix, letter * (lim.max_prefix + 1)),
                             ("append", letter * lim.max_prefix, letter * (lim.max_prefix + 1)),
                             ("top_k", candidates, candidates + 1), ("max_length", lim.max_length, lim.max_length + 1)):
        assert getattr(limited.parse_session(json.dumps({key: value})), key) == value, key
        with pytest.raises(RequestError, match=repr(key)):
            limited.parse_session(json.dumps({key: over}))


@st.composite
def session_bodies(draw, engine: Engine, over: str | None = None) -> dict:
    """A valid session body at or near the limits, or (`over`) with that field just past its limit."""
    lim = engine.limits
    if over is None and draw(st.integers(0, 9)) == 0:
        return {"close": True}
    body: dict = {}
    key = draw(st.sampled_from(["text", "append", None]))
    if over in ("text", "append"):
        key = over
    if key:
        body[key] = draw(prefixes(engine, lim.max_prefix + 1, 4 * lim.max_prefix + 1) if over == key
                         else prefixes(engine, 0, lim.max_prefix))
    candidates = min(lim.max_candidates, len(engine.vocab))
    if over == "top_k":
        body["top_k"] = draw(st.one_of(past(candidates, candidates + 100), st.integers(-100, -1)))
    elif draw(st.booleans()):
        body["top_k"] = draw(near(0, candidates))
    if over == "max_length":
        body["max_length"] = draw(st.one_of(past(lim.max_length, lim.max_length + 1000), st.integers(-5, 0)))
    elif draw(st.booleans()):
        body["max_length"] = draw(near(1, lim.max_length))
    return body


@FUZZ
@given(data=st.data())
def test_session_bodies_within_the_limits_are_accepted_and_over_them_refused(limited, data):
    body = data.draw(session_bodies(limited))
    r = limited.parse_session(json.dumps(body))
    assert r == SessionRequest(text=unicodedata.normalize("NFC", body["text"]) if "text" in body else None,
                               append=unicodedata.normalize("NFC", body["append"]) if "append" in body else None,
                               top_k=body.get("top_k", min(5, limited.limits.max_candidates)),
                               max_length=body.get("max_length", DEFAULT_MAX_LENGTH),
                               close=body.get("close", False))
    field = data.draw(st.sampled_from(["text", "append", "top_k", "max_length"]))
    with pytest.raises(RequestError, match=repr(field)) as refused:
        limited.parse_session(json.dumps(data.draw(session_bodies(limited, over=field))))
    assert refused.value.status == 400


# ---------------------------------------------------------------- valid requests


@st.composite
def valid_requests(draw, chars: list[str]) -> dict:
    prefix = "".join(draw(st.lists(st.sampled_from(chars), max_size=6)))
    body: dict = {"prefix": prefix}
    if draw(st.booleans()):
        body["max_length"] = draw(st.integers(max(1, len(prefix)), 64))
    if draw(st.booleans()):
        body["num"] = draw(st.integers(1, 8))
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 10, allow_nan=False))
        body["top_k"] = draw(st.integers(0, len(chars) + 1))
        body["seed"] = draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    return body


def check_names(body: dict, names: list[str], characters: set[str]) -> None:
    prefix = unicodedata.normalize("NFC", body.get("prefix", ""))
    num = body.get("num", 1)
    if choose_search(None, num, body.get("temperature", 0.0), bool(body.get("stream"))) == "nbest":
        # distinct names, fewer when fewer exist (or the search bound stops it)
        assert len(set(names)) == len(names) <= num
    else:
        assert len(names) == num
    for name in names:
        assert name.startswith(prefix), (body, name)
        assert set(name) <= characters, (body, name)
        assert 1 <= len(name) <= body.get("max_length", 24), (body, name)


@SLOW
@given(data=st.data())
def test_valid_requests_give_names_that_start_with_the_prefix(gen, data):
    handler, ctx = gen
    chars = handler.engine.vocab.characters
    bodies = data.draw(st.lists(valid_requests(chars), min_size=1, max_size=5))
    out = ctx.run(handler, [json.dumps(b).encode() for b in bodies])
    for body, response in zip(bodies, out):
        assert response.status == 200, (body, response.text)
        if body.get("stream"):
            lines = [json.loads(line) for line in response.streamed.decode("utf-8").splitlines()]
            names = lines[-1]["names"]
            assert ["".join(x["char"] for x in lines[:-1] if x["index"] == i) for i in range(len(names))] == names
        else:
            names = json.loads(response.text)["names"]
        check_names(body, names, set(chars))


# ---------------------------------------------------------------- the handler, whole batches

rows = st.one_of(
    raw_bodies.map(lambda b: {"body": b}),
    json_values.map(lambda v: {"body": v}),
    objects.map(lambda v: {"data": v}),
    st.dictionaries(any_text, st.binary(max_size=20), min_size=1, max_size=3),  # form fields
    st.just({}),
)


def check_response(response) -> dict:
    assert response.status in (200, *PHRASES), response.status
    assert response.phrase.isascii()  # the stand-in raises on a non-ASCII phrase anyway
    data = json.loads(response.streamed.decode("utf-8").splitlines()[-1] if response.chunks else response.text)
    if response.status != 200:
        assert set(data) == {"error"} and data["error"]
        assert response.headers.get("content-type") == "application/json"
    return data


@FUZZ
@given(batch=st.lists(rows, min_size=1, max_size=6))
def test_the_generate_handler_answers_every_row_of_any_batch(gen, batch):
    handler, ctx = gen
    out = ctx.run_rows(handler, batch)
    characters = set(handler.engine.vocab.characters)
    for response in out:
        data = check_response(response)
        if response.status == 200:
            assert all(set(name) <= characters and name for name in data["names"])


session_ids = st.one_of(st.sampled_from(["s1", "s2", "s3", "ts-seq-x"]), any_text, st.just("x" * 200))


@FUZZ
@given(batch=st.lists(st.tuples(rows, st.one_of(st.none(), session_ids)), min_size=1, max_size=6))
def test_the_session_handler_answers_every_row_of_any_batch(sess, batch):
    handler, ctx = sess
    headers = [{SEQUENCE_ID: sid} if sid is not None else {} for _, sid in batch]
    out = ctx.run_rows(handler, [row for row, _ in batch], headers)
    store = handler.engine.sessions
    assert len(store.texts) <= store.texts.max_sessions and store.answers.nbytes <= store.answers.max_bytes
    for response, (_, sid) in zip(out, batch):
        data = check_response(response)
        if response.status == 200:  # every answer names its session, in the body and the header
            assert data["session"] == response.headers[SEQUENCE_ID] and (not sid or data["session"] == sid)


ops = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                         st.sampled_from(["open", "text", "append", "close", "bad"]),
                         st.text(st.sampled_from("AMaeioln"), max_size=4)), min_size=1, max_size=12)


@SLOW
@given(steps=ops)
def test_sessions_follow_what_was_typed(model_dir, steps):
    handler, ctx = handler_for(model_dir, "session")
    model: dict[str, str] = {}  # what the session has typed, per open session
    for name, op, chars in steps:
        sid = f"fuzz-{name}"
        body = {"open": {"text": chars}, "text": {"text": chars}, "append": {"append": chars},
                "close": {"close": True}, "bad": {"append": 5}}[op]
        r = ctx.run(handler, [json.dumps(body).encode()], [{SEQUENCE_ID: sid}])[0]
        if op == "bad":
            assert r.status == 400
        elif op == "close":
            assert r.status == 200 and json.loads(r.text) == {"session": sid, "closed": True}
            model.pop(sid, None)
        elif op == "append" and sid not in model:
            assert r.status == 404 and "send the whole 'text'" in json.loads(r.text)["error"]
        else:
            expected = chars if op in ("open", "text") else model[sid] + chars
            if len(expected) > handler.engine.limits.max_prefix:
                assert r.status == 400
                continue
            assert r.status == 200, r.text
            answer = json.loads(r.text)
            assert answer["text"] == expected and answer["completion"].startswith(expected)
            model[sid] = expected
    assert set(model) == {sid for sid in model if sid in handler.engine.sessions.texts}


# ---------------------------------------------------------------- status phrases


def statuses_in(path: Path) -> set[int]:
    """Every literal HTTP status given to RequestError(...) in a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RequestError":
            candidates = node.args[1:2] + [k.value for k in node.keywords if k.arg == "status"]
            found |= {c.value for c in candidates if isinstance(c, ast.Constant) and isinstance(c.value, int)}
    return found


def calls_named(path: Path, name: str) -> list[ast.Call]:
    """Every call of a function or method called `name` in a module."""
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and name in (getattr(node.func, "attr", None), getattr(node.func, "id", None))]


def phrase_argument(call: ast.Call) -> ast.expr | None:
    """The phrase given to context.set_response_status(status, phrase, idx=...)."""
    return next((k.value for k in call.keywords if k.arg == "phrase"), call.args[1] if len(call.args) > 1 else None)


def is_phrases_lookup(node: ast.expr | None) -> bool:
    """`PHRASES.get(...)` or `PHRASES[...]`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "get" and getattr(node.func.value, "id", None) == "PHRASES"
    return isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "PHRASES"


def test_every_status_the_handler_can_set_has_an_ascii_phrase():
    """A non-ASCII status phrase kills a TorchServe worker: every status the engine and the
    handler can raise has its own ASCII phrase, and the handler sets phrases only from PHRASES."""
    statuses = statuses_in(ROOT / "serve" / "engine.py") | statuses_in(ROOT / "serve" / "handler.py")
    assert statuses and statuses | {400} <= set(PHRASES), statuses - set(PHRASES)
    assert all(phrase and phrase.isascii() and phrase.isprintable() for phrase in PHRASES.values())
    phrases = [phrase_argument(call) for call in calls_named(ROOT / "serve" / "handler.py", "set_response_status")]
    assert phrases and all(is_phrases_lookup(p) for p in phrases), [ast.unparse(p) for p in phrases if p]


def test_a_valid_request_after_the_fuzzing_is_answered_as_before(gen, engine):
    handler, ctx = gen
    names = json.loads(ctx.run(handler, [b'{"prefix": "Ma", "num": 3}'])[0].text)["names"]
    assert names == engine.generate([GenerateRequest(prefix="Ma", num=3)])[0]


def test_defaults_of_left_out_fields_respect_an_operator_s_smaller_caps(tiny_artifacts):
    """A cap below a field's default is the promise: a body that leaves the field out gets the cap."""
    small = Engine.from_artifacts(tiny_artifacts.torchscript, limits=Limits(max_length=10, max_candidates=3))
    assert small.parse_generate(b"{}").max_length == 10
    session = small.parse_session(b'{"text": "Ma"}')
    assert session.max_length == 10 and session.top_k == 3
