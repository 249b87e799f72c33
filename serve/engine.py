"""The serving engine: strict request validation, batched one-shot generation, streaming and
per-session hidden state, over the one torch decoding loop (`model.decode.decode`) and, for
greedy one-shot names on CPU, the one-graph ONNX decoder (charrnn_generate.onnx).

TorchServe-free on purpose: `serve/handler.py` is a thin adapter over this module, tests host it
in-process, and another server could host it later.

- `parse_generate` / `parse_session` turn a request body (bytes, str or an already-parsed
  object) into a typed request or raise `RequestError` naming the field: unknown fields, wrong
  types (a bool is not an integer), NaN/inf, out-of-range numbers, over-long text and
  characters outside the vocabulary are all refused.
- `generate` decodes the requests of a batch in one call per decoder: the greedy, non-streamed
  ones in one run of the one-graph decoder when the engine has it, all others in ONE `decode`
  call (each request's `num` names become rows via `core.request.make_rows`, with their own
  prefix, length, temperature, top-k and seed), then splits the names back per request. Rows
  never influence each other, so a request gets the same names alone or in any batch. Streaming uses decode's `on_step` hook.
- `answer` is `generate` with each name's log-probability; requests with temperature 0 and
  num > 1 (or "search": "nbest") run the exact n-best search instead (serve.answers over
  model.nbest, docs/nbest.md).
- `session` keeps a hidden state per session id on the device (an LRU with idle expiry),
  feeds the newly typed characters and returns the next-character distribution and the greedy
  completion, again in one `decode` call per batch (continuing from decode's `Start`), and the
  top whole-name completions from the n-best search.
"""

from __future__ import annotations

import json
import math
import secrets
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core import manifest
from core.errors import ArtifactError
from core.noise import MAX_SEED
from core.request import DEFAULT_MAX_LENGTH, Row, make_rows
from core.vocab import Vocab, VocabError
from model import nbest
from model.batch import NameText, RowBatch
from model.chunked import MODES, ChunkedDecoder
from model.decode import Start, decode
from model.nbest_torch import TorchStepper
from model.torchscript import load_torchscript
from serve import answers
from serve.answers import Answer

if TYPE_CHECKING:  # imported when used: numpy and ONNX Runtime are not needed on a GPU
    from export.runtime import OnnxGreedy

NDJSON = "application/x-ndjson"
# batch sizes the GPU decoder captures at load (model.chunked): up to 64 requests of 64 names
ENGINE_BUCKETS = (1, 8, 64, 256, 1024, 4096)
# the decoders a one-shot request can be answered by (Engine.decoder)
ONNX_GRAPH = "onnx-graph"  # charrnn_generate.onnx: the whole greedy loop in one ONNX Runtime call
TORCH = "torch"  # model.decode.decode over the TorchScript step
TORCH_CHUNKED = "torch-chunked"  # model.chunked over the TorchScript step (CUDA graphs on a GPU)
NBEST = "nbest"  # the n-best search (model.nbest) over the TorchScript step


class RequestError(ValueError):
    """A refused request. `status` is the HTTP status to answer; the message names the problem
    (it may hold any character: send it in the body, never in a status phrase)."""

    def __init__(self, message: str, status: int = 400, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after  # seconds, for a Retry-After header (429)


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask for (requests over them are refused, not clipped)."""

    max_prefix: int = 32  # characters of a prefix, or of a session's whole text
    max_length: int = 64  # largest accepted max_length
    max_num: int = 64  # names per one-shot request
    max_temperature: float = 10.0
    max_candidates: int = 20  # next-character candidates per session answer
    max_body_bytes: int = 16384  # a raw body larger than this is refused with 413
    max_nbest: int = 32  # names per n-best request (temperature 0, num > 1, or search "nbest")
    max_completions: int = 10  # top completions per session answer
    max_expansions: int = nbest.DEFAULT_MAX_EXPANSIONS  # n-best bound: prefixes expanded per search
    nbest_width: int = nbest.DEFAULT_WIDTH  # frontier prefixes expanded per step call

    @classmethod
    def from_dict(cls, data: Mapping | None) -> Limits:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown limits {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class GenerateRequest:
    prefix: str = ""  # NFC-normalised, every character in the vocabulary
    max_length: int = DEFAULT_MAX_LENGTH
    num: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = all symbols
    seed: int | None = None  # None: a fresh seed per request (sampling only)
    stream: bool = False
    search: str | None = None  # "nbest" | "greedy"; None: model.nbest.choose_search decides


@dataclass(frozen=True)
class SessionRequest:
    text: str | None = None  # everything typed so far (replaces the session's text)
    append: str | None = None  # only the newly typed characters
    top_k: int = 5  # next-character candidates to return
    max_length: int = DEFAULT_MAX_LENGTH  # length cap of the greedy completion
    close: bool = False
    completions: int = 3  # the most probable whole names to add (model.nbest), 0 = none


GENERATE_FIELDS = frozenset(f.name for f in fields(GenerateRequest))
SESSION_FIELDS = frozenset(f.name for f in fields(SessionRequest))


# ---------------------------------------------------------------- parsing and validation


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _reject_constant(name: str):
    raise RequestError(f"body is not valid JSON: {name} is not a number (numbers must be finite)")


def parse_body(payload: object, max_bytes: int) -> dict:
    """A JSON object from raw bytes/str, or an object TorchServe already parsed."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        if len(payload) > max_bytes:
            raise RequestError(f"body is {len(payload)} bytes; the limit is {max_bytes}", 413)
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(f"body is not UTF-8 text (byte {exc.start})") from None
    if isinstance(payload, str):
        if len(payload) > max_bytes:
            raise RequestError(f"body is {len(payload)} characters; the limit is {max_bytes}", 413)
        if not payload.strip():
            payload = None
        else:
            try:
                payload = json.loads(payload, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                raise RequestError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                   f"column {exc.colno}") from None
            except RecursionError:
                raise RequestError("body is not valid JSON: nested too deeply") from None
            except RequestError:  # NaN/Infinity, from _reject_constant
                raise
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                raise RequestError(f"body is not valid JSON: {str(exc).split(':')[0]}") from None
    if payload is None:
        raise RequestError('request body is empty: send a JSON object, e.g. {"prefix": "L"}')
    if not isinstance(payload, dict):
        raise RequestError(f"body must be a JSON object, got {_json_type(payload)}")
    return payload


def _check_fields(body: dict, allowed: frozenset) -> None:
    unknown = [k for k in body if k not in allowed]
    if unknown:
        names = ", ".join(repr(k) for k in sorted(unknown, key=str))
        raise RequestError(f"unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}")


def _int(body: dict, key: str, default, lo: int, hi: int, *, nullable: bool = False):
    if key not in body:
        return default
    value = body[key]
    if value is None and nullable:
        return None
    if type(value) is not int:  # a bool is not an integer, nor is 3.0
        raise RequestError(f"{key!r} must be an integer, got {_json_type(value)}")
    if not lo <= value <= hi:
        raise RequestError(f"{key!r} must be between {lo} and {hi}, got {value}")
    return value


def _number(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    if key not in body:
        return default
    value = body[key]
    if type(value) not in (int, float):
        raise RequestError(f"{key!r} must be a number, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"{key!r} must be a finite number, got {value}")
    if not lo <= value <= hi:
        raise RequestError(f"{key!r} must be between {lo} and {hi}, got {value}")
    return float(value)


def _bool(body: dict, key: str, default: bool) -> bool:
    if key not in body:
        return default
    value = body[key]
    if type(value) is not bool:
        raise RequestError(f"{key!r} must be true or false, got {_json_type(value)}")
    return value


# ---------------------------------------------------------------- sessions


@dataclass
class SessionState:
    text: str  # what the person has typed (NFC)
    length: int  # symbols in `text`
    token: int  # next input token: the last typed symbol, or begin-of-name
    hidden: torch.Tensor  # [layers, hidden] on the engine's device: `text` minus its last symbol fed
    used: float = 0.0


class SessionStore:
    """Per-session state, bounded: at most `max_sessions` (least recently used evicted first) and
    none idle longer than `idle_seconds`. TorchServe expires its sequences without telling the
    handler, so this store must bound itself.

    With `max_open`, at most that many sessions may be *open*: used within the last
    `open_window` seconds (TorchServe's sequenceMaxIdleMSec: the time its frontend holds an
    idle sequence's slot). A session that would become open beyond that is refused (429) before
    TorchServe's own slots (maxNumSequence) run out and it answers a misleading 503. Sessions
    idle longer than the window stay resumable until `idle_seconds` but no longer count."""

    def __init__(self, max_sessions: int = 128, idle_seconds: float = 120.0,
                 clock: Callable[[], float] = time.monotonic, *, max_open: int | None = None,
                 open_window: float | None = None):
        if max_sessions < 1 or not idle_seconds > 0:
            raise ValueError("max_sessions must be >= 1 and idle_seconds > 0")
        if max_open is not None and not 1 <= max_open <= max_sessions:
            raise ValueError("max_open must be between 1 and max_sessions")
        if open_window is not None and not 0 < open_window <= idle_seconds:
            raise ValueError("open_window must be > 0 and <= idle_seconds")
        self.max_sessions, self.idle_seconds, self.clock = max_sessions, idle_seconds, clock
        self.max_open, self.open_window = max_open, open_window if open_window is not None else idle_seconds
        self._states: OrderedDict[str, SessionState] = OrderedDict()
        self.evicted = 0
        self.expired = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, sid: str) -> bool:
        return sid in self._states

    def expire(self) -> None:
        horizon = self.clock() - self.idle_seconds
        while self._states:
            oldest = next(iter(self._states.values()))
            if oldest.used >= horizon:
                break
            self._states.popitem(last=False)
            self.expired += 1

    def peek(self, sid: str) -> SessionState | None:
        """The state without marking it used (put marks it)."""
        self.expire()
        return self._states.get(sid)

    def get(self, sid: str) -> SessionState | None:
        self.expire()
        state = self._states.get(sid)
        if state is not None:
            state.used = self.clock()
            self._states.move_to_end(sid)
        return state

    def put(self, sid: str, state: SessionState) -> None:
        state.used = self.clock()
        self._states[sid] = state
        self._states.move_to_end(sid)
        while len(self._states) > self.max_sessions:
            self._states.popitem(last=False)
            self.evicted += 1

    def pop(self, sid: str) -> bool:
        return self._states.pop(sid, None) is not None

    def is_open(self, sid: str) -> bool:
        state = self._states.get(sid)
        return state is not None and state.used >= self.clock() - self.open_window

    def open_count(self) -> int:
        """Sessions used within the open window (the store is in least-recently-used order)."""
        horizon, count = self.clock() - self.open_window, 0
        for state in reversed(self._states.values()):
            if state.used < horizon:
                break
            count += 1
        return count

    def admission(self, pending: int = 0) -> RequestError | None:
        """None if one more session may open (beside `pending` ones already admitted), else the
        429 to answer, with the seconds until the least recently used open session leaves the
        window."""
        if self.max_open is None:
            return None
        count = self.open_count()
        if count + pending < self.max_open:
            return None
        self.refused += 1
        horizon = self.clock() - self.open_window
        oldest = next((s.used for s in self._states.values() if s.used >= horizon), self.clock())
        retry = max(1.0, math.ceil(oldest + self.open_window - self.clock()))
        return RequestError(f"too many open sessions: {count + pending} were used in the last "
                            f"{self.open_window:g} s and the limit is {self.max_open}; close one "
                            f'(send {{"close": true}}) or retry in {retry:g} s', 429, retry_after=retry)


class _Recorder:
    """Wraps the step to keep each step's logits and hidden output (on the device, no sync):
    a session needs the state after its own number of fed characters."""

    def __init__(self, step):
        self.step, self.logits, self.hidden = step, [], []

    def __call__(self, token, hidden):
        logits, hidden = self.step(token, hidden)
        self.logits.append(logits)
        self.hidden.append(hidden)
        return logits, hidden


# ---------------------------------------------------------------- the engine


class Engine:
    """Validates requests and decodes them in batches with `model.decode.decode` on `device`
    (`model.chunked.ChunkedDecoder` on a GPU)."""

    CHUNKED_ON_CPU = False  # tests: run the GPU's decoding path (capture off) on CPU by default

    def __init__(self, step, vocab: Vocab, hidden_shape: tuple[int, int], *, device: str | torch.device = "cpu",
                 limits: Limits | None = None, sessions: SessionStore | None = None,
                 fingerprint: str | None = None, greedy: OnnxGreedy | None = None, chunked: bool | None = None):
        self.step, self.vocab, self.hidden_shape = step, vocab, tuple(hidden_shape)
        self.greedy = greedy  # charrnn_generate.onnx: greedy one-shot names in one ORT run
        self.device = torch.device(device)
        self.limits = limits or Limits()
        self.sessions = sessions if sessions is not None else SessionStore()
        self.fingerprint = fingerprint
        self._symbols = vocab.symbols
        self._max_top_k = len(vocab)
        self._max_candidates = min(self.limits.max_candidates, len(vocab))
        if self.device.type == "cuda":
            # parity with CPU results over speed: TF32 could flip a near-tie argmax
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._zero_hidden = torch.zeros(*self.hidden_shape, device=self.device)
        # model.chunked: on a GPU (default), one-shot names, streams and session waves replay
        # captured chunks of steps; on CPU the per-step loop stays unless chunked=True (tests)
        self.chunked: ChunkedDecoder | None = None
        if (self.device.type == "cuda" or self.CHUNKED_ON_CPU) if chunked is None else chunked:
            self.chunked = ChunkedDecoder(step, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                                          hidden_shape=self.hidden_shape, device=self.device, buckets=ENGINE_BUCKETS,
                                          max_steps=self.limits.max_prefix + self.limits.max_length,
                                          max_prefix=self.limits.max_prefix)
            self._name_text = NameText(vocab)

    @classmethod
    def from_artifacts(cls, torchscript: str | Path, vocab_json: str | Path | None = None, *,
                       device: str | torch.device = "cpu", limits: Limits | None = None,
                       sessions: SessionStore | None = None, greedy_graph: str | Path | None = None,
                       chunked: bool | None = None) -> Engine:
        """Load the TorchScript step. With `vocab_json` (the copy shipped beside it, e.g. in the
        .mar), refuse to start unless it matches the vocabulary inside the TorchScript file.

        With `greedy_graph` (charrnn_generate.onnx of the same export) and a CPU device, greedy
        one-shot requests run the whole loop in one ONNX Runtime call instead of one TorchScript
        call (with its interpreter overhead) per step; `make bench-runtime` measures both. On a
        GPU the TorchScript loop stays: the batch is on the device."""
        module, vocab, meta = load_torchscript(torchscript, device)
        if vocab_json is not None:
            check_vocab_file(vocab_json, vocab, meta, torchscript)
        greedy = None
        if greedy_graph is not None and torch.device(device).type == "cpu":
            from export.runtime import OnnxGreedy

            greedy = OnnxGreedy.from_path(greedy_graph, threads=max(1, torch.get_num_threads()))
            greedy.require_export(meta.get("fingerprint"), vocab.symbols, str(torchscript))
        return cls(module, vocab, (meta["num_layers"], meta["hidden_size"]), device=device,
                   limits=limits, sessions=sessions, fingerprint=meta.get("fingerprint"), greedy=greedy,
                   chunked=chunked)

    # ------------------------------------------------------------ one-shot requests

    def _text(self, body: dict, key: str) -> str:
        value = body[key]
        if type(value) is not str:
            raise RequestError(f"{key!r} must be a string, got {_json_type(value)}")
        limit = self.limits.max_prefix
        if len(value) > 4 * limit:  # cheap guard before normalising
            raise RequestError(f"{key!r} is {len(value)} characters long; the limit is {limit}")
        value = unicodedata.normalize("NFC", value)
        if len(value) > limit:
            raise RequestError(f"{key!r} is {len(value)} characters long; the limit is {limit}")
        try:
            self.vocab.encode(value)
        except VocabError as exc:
            raise RequestError(f"{key!r} has {exc}") from None
        return value

    def parse_generate(self, payload: object) -> GenerateRequest:
        body = parse_body(payload, self.limits.max_body_bytes)
        _check_fields(body, GENERATE_FIELDS)
        lim = self.limits
        prefix = self._text(body, "prefix") if "prefix" in body else ""
        # a default never exceeds an operator's smaller cap: the cap is the promise
        max_length = _int(body, "max_length", min(DEFAULT_MAX_LENGTH, lim.max_length), 1, lim.max_length)
        if max_length < len(prefix):
            raise RequestError(f"'max_length' ({max_length}) is shorter than the prefix "
                               f"({len(prefix)} characters)")
        request = GenerateRequest(
            prefix=prefix,
            max_length=max_length,
            num=_int(body, "num", 1, 1, lim.max_num),
            temperature=_number(body, "temperature", 0.0, 0.0, lim.max_temperature),
            top_k=_int(body, "top_k", 0, 0, self._max_top_k),
            seed=_int(body, "seed", None, 0, MAX_SEED, nullable=True),
            stream=_bool(body, "stream", False),
            search=_search(body),
        )
        if _search_of(request) == "nbest" and request.num > lim.max_nbest:
            raise RequestError(f"'num' must be at most {lim.max_nbest} for the n-best search (temperature 0 "
                               f"and num > 1, or search 'nbest'), got {request.num}; sample with a "
                               "temperature above 0 for more names")
        return request

    def generate(self, requests: Sequence[GenerateRequest],
                 on_chars: Callable[[int, list[tuple[int, str]]], None] | None = None) -> list[list[str]]:
        """Names per request (`answer` without the log-probabilities)."""
        return [a.names for a in self.answer(requests, on_chars, scores=False)]

    def answer(self, requests: Sequence[GenerateRequest],
               on_chars: Callable[[int, list[tuple[int, str]]], None] | None = None, *,
               scores: bool = True) -> list[Answer]:
        """Names and their log-probabilities per request: the n-best requests by the search
        (serve.answers), the others decoded (`_decode_names`) and then scored in one batch."""
        searched = [i for i, r in enumerate(requests) if self.decoder(r) == NBEST]
        names = self._decode_names(requests, on_chars, skip=set(searched))
        stepper = TorchStepper(self.step, self.hidden_shape, self.device)
        found = dict(zip(searched, answers.searched_answers(
            stepper, self.vocab, [(requests[i].prefix, requests[i].num, requests[i].max_length) for i in searched],
            max_expansions=self.limits.max_expansions, width=self.limits.nbest_width)))
        flat = [n for i, got in enumerate(names) if i not in found for n in got]
        logprobs = iter(answers.scores(stepper, self.vocab, flat) if scores and flat else [])
        return [found[i] if i in found else Answer(got, [next(logprobs) for _ in got] if scores and flat else [])
                for i, got in enumerate(names)]

    def _decode_names(self, requests: Sequence[GenerateRequest], on_chars, skip: set[int]) -> list[list[str]]:
        """Names per request but those in `skip`. With the one-graph decoder (`greedy`), the greedy
        requests that do not stream are decoded in one run of it; all other requests in one `decode` call.

        on_chars(request_index, [(name_index, character), ...]) is called after every step for
        each request with `stream` set (streaming reads the step's ids on the host: one sync per
        step, so it is only installed when a request streams).
        """
        names: list[list[str]] = [[] for _ in requests]
        by_graph = [self.decoder(r) == ONNX_GRAPH for r in requests]
        for graph in (True, False):
            indices = [i for i, g in enumerate(by_graph) if g == graph and i not in skip]
            if indices:
                for i, got in zip(indices, self._decode_requests([requests[i] for i in indices], indices,
                                                                 graph, on_chars)):
                    names[i] = got
        return names

    def decoder(self, request: GenerateRequest) -> str:
        """Which decoder `generate` runs for `request` (the one home of that choice; the handler
        reports it per response): NBEST, ONNX_GRAPH, TORCH, or TORCH_CHUNKED where the engine
        runs model.chunked (on a GPU)."""
        if _search_of(request) == "nbest":
            return NBEST
        if self.greedy is not None and request.temperature == 0 and not request.stream:
            return ONNX_GRAPH
        return TORCH_CHUNKED if self.chunked is not None else TORCH

    def _decode_requests(self, requests: Sequence[GenerateRequest], indices: list[int], graph: bool,
                         on_chars) -> list[list[str]]:
        if not graph and self.chunked is not None:
            return self._decode_chunked(requests, indices, on_chars)
        rows: list[Row] = []
        spans: list[tuple[int, int]] = []
        for r in requests:
            spans.append((len(rows), r.num))
            rows.extend(make_rows(self.vocab, r.prefix, num=r.num, max_length=r.max_length,
                                  temperature=r.temperature, top_k=r.top_k, seed=r.seed))
        if graph:
            ids = self.greedy.decode(rows)
        else:
            on_step = None
            if on_chars is not None:
                streamed = [(indices[j], s, n) for j, (r, (s, n)) in enumerate(zip(requests, spans)) if r.stream]
                if streamed:
                    on_step = self._streamer(streamed, on_chars)
            ids = decode(self.step, rows, bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id,
                         hidden_shape=self.hidden_shape, device=self.device, on_step=on_step)
        names = [self.vocab.decode(row) for row in ids]
        return [names[s:s + n] for s, n in spans]

    def _decode_chunked(self, requests: Sequence[GenerateRequest], indices: list[int], on_chars) -> list[list[str]]:
        """_decode_requests on model.chunked: the rows built per request, not per row, and the
        names turned into text in one go (model.batch); the same names as `decode` gives."""
        seeds = [r.seed if r.seed is not None else secrets.randbelow(MAX_SEED + 1) for r in requests]
        batch = RowBatch.from_groups([self.vocab.encode(r.prefix) for r in requests], [r.num for r in requests],
                                     [r.max_length for r in requests], [r.temperature for r in requests],
                                     [r.top_k for r in requests], seeds)
        starts = [0]
        for r in requests:
            starts.append(starts[-1] + r.num)
        on_step = None
        if on_chars is not None:
            streamed = [(indices[j], starts[j], r.num) for j, r in enumerate(requests) if r.stream]
            if streamed:
                on_step = self._streamer(streamed, on_chars)
        names = self._name_text.names(self.chunked.run(batch, on_step=on_step).ids)
        return [names[starts[j]:starts[j + 1]] for j in range(len(requests))]

    def _streamer(self, streamed, on_chars):
        symbols = self._symbols

        def on_step(t: int, ids: torch.Tensor, active: torch.Tensor) -> None:
            ids_h, active_h = ids.tolist(), active.tolist()
            for request_index, start, num in streamed:
                chars = [(j, symbols[ids_h[start + j]]) for j in range(num) if active_h[start + j]]
                if chars:
                    on_chars(request_index, chars)

        return on_step

    # ------------------------------------------------------------ sessions

    def parse_session(self, payload: object) -> SessionRequest:
        body = parse_body(payload, self.limits.max_body_bytes)
        _check_fields(body, SESSION_FIELDS)
        if "text" in body and "append" in body:
            raise RequestError("send either 'text' (everything typed so far) or 'append' "
                               "(the new characters), not both")
        close = _bool(body, "close", False)
        if close and len(body) > 1:
            raise RequestError("'close' must be sent alone")
        return SessionRequest(
            text=self._text(body, "text") if "text" in body else None,
            append=self._text(body, "append") if "append" in body else None,
            top_k=_int(body, "top_k", min(5, self._max_candidates), 0, self._max_candidates),
            max_length=_int(body, "max_length", min(DEFAULT_MAX_LENGTH, self.limits.max_length), 1,
                            self.limits.max_length),
            close=close,
            completions=_int(body, "completions", 3, 0, self.limits.max_completions),
        )

    def session(self, items: Sequence[tuple[str, SessionRequest, bool]]) -> list[dict | RequestError]:
        """Answer session requests (session id, request, opens-the-session) in order.

        Each answer is {"session", "text", "next": [{"char", "p"}...], "completion"} ("char" ""
        is end-of-name), {"session", "closed": true}, or a RequestError (404: the session is
        unknown or expired and the request cannot rebuild it; 400: the text got too long).
        A session appearing twice in one batch is answered in two passes, in order.
        """
        results: list = [None] * len(items)
        pending = list(range(len(items)))
        while pending:
            seen: set[str] = set()
            wave, later = [], []
            for i in pending:
                (later if items[i][0] in seen else wave).append(i)
                seen.add(items[i][0])
            self._session_wave(items, wave, results)
            pending = later
        return results

    @torch.inference_mode()
    def _session_wave(self, items, wave: list[int], results: list) -> None:
        store, vocab = self.sessions, self.vocab
        store.expire()
        jobs = []  # (result index, sid, request, base state or None, text, fed ids)
        admitted = 0  # sessions this wave opens (new, or back after the open window)
        for i in wave:
            sid, req, opens = items[i]
            if req.close:
                store.pop(sid)
                results[i] = {"session": sid, "closed": True}
                continue
            was_open = store.is_open(sid)
            state = None if opens else store.peek(sid)
            if req.text is not None:  # the whole text: continue if it extends the session's text
                text = req.text
                if state is not None and text.startswith(state.text):
                    feed = text[len(state.text):]
                else:
                    state, feed = None, text  # new, forgotten, or edited (backspace): rebuild
            else:
                if state is None and not opens:
                    results[i] = RequestError(f"session {sid!r} is unknown or expired: open a new "
                                              "session, or send the whole 'text'", 404)
                    continue
                feed = req.append or ""
                text = (state.text if state is not None else "") + feed
            if len(text) > self.limits.max_prefix:
                results[i] = RequestError(f"the session's text would be {len(text)} characters "
                                          f"long; the limit is {self.limits.max_prefix}")
                continue
            if not was_open:
                refusal = store.admission(admitted)
                if refusal is not None:
                    results[i] = refusal
                    continue
                admitted += 1
            jobs.append((i, sid, req, state, text, vocab.encode(feed)))
        if not jobs:
            return

        batch = len(jobs)
        device = self.device
        base_hidden = torch.stack([s.hidden if s is not None else self._zero_hidden
                                   for _, _, _, s, _, _ in jobs])  # [B, L, H]
        start = Start(
            token=torch.tensor([s.token if s is not None else vocab.bos_id for _, _, _, s, _, _ in jobs],
                               dtype=torch.long, device=device),
            hidden=base_hidden.transpose(0, 1).contiguous(),
            name_length=torch.tensor([s.length if s is not None else 0 for _, _, _, s, _, _ in jobs],
                                     dtype=torch.long, device=device),
        )
        # each row forces its new characters, then decodes the greedy completion (>= 1 step, so
        # the step after the last typed character, whose logits we need, always runs)
        rows = [Row(tuple(fed), len(fed) + max(1, req.max_length - len(text)))
                for _, _, req, _, text, fed in jobs]
        if self.chunked is not None:  # captured chunks on a GPU; the recording is static buffers
            lengths = [s.length if s is not None else 0 for _, _, _, s, _, _ in jobs]
            out = self.chunked.run(RowBatch.from_rows(rows, lengths), start=start, record=True)
            ids, recorded_logits, recorded_hidden = self.chunked.id_lists(out.ids, rows), out.logits, out.hidden
        else:
            recorder = _Recorder(self.step)
            ids = decode(recorder, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                         hidden_shape=self.hidden_shape, device=device, start=start)
            recorded_logits, recorded_hidden = torch.stack(recorder.logits), torch.stack(recorder.hidden)

        fed_count = torch.tensor([len(fed) for *_, fed in jobs], dtype=torch.long, device=device)
        rows_index = torch.arange(batch, device=device)
        logits = recorded_logits[fed_count, rows_index]  # [B, V] after the whole text
        empty = torch.tensor([not text for *_, text, _ in jobs], device=device)
        eos = torch.arange(logits.shape[1], device=device) == vocab.eos_id
        logits = logits.masked_fill(empty.unsqueeze(1) & eos.unsqueeze(0), float("-inf"))
        k = max(req.top_k for _, _, req, _, _, _ in jobs)
        top = torch.softmax(logits, dim=1).topk(k, dim=1) if k else None
        # hidden after feeding all but the last new character: stays on the device
        after = recorded_hidden[(fed_count - 1).clamp_min(0), :, rows_index]  # [B, L, H] ([T, L, B, H] recorded)
        after = torch.where((fed_count == 0).view(batch, 1, 1), base_hidden, after)
        if top is not None:  # one copy to the host for probabilities and symbols together
            top_host = torch.cat([top.values, top.indices.to(top.values.dtype)], dim=1).tolist()

        for row, (i, sid, req, state, text, fed) in enumerate(jobs):
            token = fed[-1] if fed else (state.token if state is not None else vocab.bos_id)
            length = (state.length if state is not None else 0) + len(fed)
            store.put(sid, SessionState(text, length, token, after[row]))
            completion = (text + vocab.decode(ids[row][len(fed):]))[: max(req.max_length, len(text))]
            candidates = []
            if top is not None:
                probs, symbols = top_host[row][:k], top_host[row][k:]
                for p, s in zip(probs[: req.top_k], symbols[: req.top_k]):
                    s = int(s)
                    candidates.append({"char": "" if s == vocab.eos_id else self._symbols[s],
                                       "p": round(p, 6)})
            results[i] = {"session": sid, "text": text, "next": candidates, "completion": completion}
        self._add_completions(jobs, results)

    def _add_completions(self, jobs, results: list) -> None:
        """Each answer's top whole names ("completions": [{"name", "logprob"}], best first, and
        "completions_complete") from the n-best search over the session's text (serve.answers)."""
        wanted = [(i, text, req.completions, req.max_length) for i, _, req, _, text, _ in jobs if req.completions]
        found = answers.completions(TorchStepper(self.step, self.hidden_shape, self.device), self.vocab,
                                    [w[1:] for w in wanted], max_expansions=self.limits.max_expansions,
                                    width=self.limits.nbest_width)
        for (i, *_), (names, complete) in zip(wanted, found):
            results[i]["completions"] = names
            results[i]["completions_complete"] = complete

    # ------------------------------------------------------------ misc

    def warm_up(self) -> None:
        """Run each path once, so the first real request does not pay TorchScript's profiling;
        on a GPU, capture the chunked decoder's graphs first (never on the request path)."""
        if self.chunked is not None:
            self.chunked.warm_up(modes=MODES, record=True)
        for _ in range(3):
            self.generate([GenerateRequest(num=2), GenerateRequest(prefix=self.vocab.characters[0],
                                                                   temperature=1.0, top_k=3, seed=1)])
            sid = "\0warm-up"
            self.session([(sid, SessionRequest(text=self.vocab.characters[0]), True)])
            self.session([(sid, SessionRequest(append=self.vocab.characters[0]), False)])
            self.sessions.pop(sid)


def check_vocab_file(vocab_json: str | Path, vocab: Vocab, meta: dict, torchscript: str | Path) -> None:
    """Refuse a vocab.json that is not the one inside the TorchScript file (different run)."""
    path = Path(vocab_json)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: cannot read the vocabulary file ({exc})") from None
    try:
        _, file_meta = manifest.parse(text, str(path))
    except VocabError as exc:
        raise ArtifactError(str(exc)) from None
    manifest.check_same_export(file_meta, str(path), meta, f"the vocab.json inside {torchscript}",
                               fix="rebuild the archive (make archive)")


def _search(body: dict) -> str | None:
    value = body.get("search")
    if value is None:
        return None
    if value not in nbest.SEARCHES:
        raise RequestError(f"'search' must be one of {', '.join(map(repr, nbest.SEARCHES))}, got "
                           f"{_json_type(value) if not isinstance(value, str) else repr(value[:40])}")
    return value


def _search_of(request: GenerateRequest) -> str:
    """"nbest", "greedy" or "sample" (model.nbest.choose_search); a conflict is a RequestError."""
    try:
        return nbest.choose_search(request.search, request.num, request.temperature, request.stream)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def names_json(names: list[str]) -> str:
    return json.dumps({"names": names}, ensure_ascii=False)


def error_json(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def stream_lines(chars: list[tuple[int, str]]) -> bytes:
    """NDJSON lines for one step of a streamed request: {"index": name index, "char": c}."""
    return "".join(json.dumps({"index": j, "char": c}, ensure_ascii=False) + "\n"
                   for j, c in chars).encode("utf-8")


def stream_end(names: list[str], logprobs: list[float] | None = None) -> bytes:
    end = {"names": names, "done": True}
    if logprobs is not None:
        end["logprobs"] = [round(x, answers.DIGITS) for x in logprobs]
    return (json.dumps(end, ensure_ascii=False) + "\n").encode("utf-8")
