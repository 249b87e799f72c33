"""The serving engine: batched one-shot generation, streaming and per-session hidden state,
over the one torch decoding loop (`model.chunked.ChunkedDecoder`: eager on CPU, captured CUDA
graphs on a GPU) and, for greedy one-shot names on CPU, the one-graph ONNX decoder
(charrnn_generate.onnx).

TorchServe-free on purpose: `serve/handler.py` is a thin adapter over this module, tests host it
in-process, and another server could host it later. Its neighbours, one job each:
serve/validation.py (request bodies into typed requests), serve/sessions.py (session texts and caches),
serve/artifacts.py (vocab.json against the TorchScript file), serve/wire.py (the JSON and NDJSON
bodies), serve/answers.py (the n-best search and scores).

- `parse_generate` / `parse_session` validate a request body (serve.validation) against the
  engine's limits and vocabulary.
- `generate` decodes the requests of a batch in one call per decoder: the greedy, non-streamed
  ones in one run of the one-graph decoder when the engine has it, all others in ONE run of the
  torch loop (each request's `num` names become rows of a `model.batch.RowBatch`, with their own
  prefix, length, temperature, top-k and seed, the rows `core.request.make_rows` gives; ids to
  text by `model.batch.NameText`), then splits the names back per request. Rows never influence
  each other, so a request gets the same names alone or in any batch (up to near-ties,
  docs/numerics.md). Streaming uses the loop's
  `on_step` hook (a host read per step).
- `answer` is `generate` with each name's log-probability, from the same run as the names (the
  one-graph decoder's `logprob` output; the torch loop sums them as it decodes); requests with
  temperature 0 and num > 1 (or "search": "nbest") run the exact n-best search instead
  (serve.answers over model.nbest, docs/nbest.md).
- `session_json` answers typing sessions: a request's text is its `text`, or the session's
  text plus its `append`; the answer (next-character distribution, greedy completion, top
  whole-name completions from the n-best search) depends on that text only, so it comes from
  the answer cache when another request asked the same, else it is computed for the batch's
  new texts in one run of the torch loop, each continuing from the hidden state of its longest
  cached prefix (serve.sessions: bounded caches keyed by text, on the engine's device).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.request import Row, request_seed
from core.vocab import Vocab
from model.batch import NameText, RowBatch
from model.chunked import MODES, ChunkedDecoder
from model.decode import Start
from model.nbest_torch import TorchStepper
from model.torchscript import load_torchscript
from serve import answers
from serve.artifacts import check_vocab_file
from serve.sessions import SessionAnswer, SessionStore, new_session_id
from serve.validation import (
    GenerateRequest,
    Limits,
    RequestError,
    SessionRequest,
    parse_generate,
    parse_session,
    search_of,
)
from serve.wire import Answer

if TYPE_CHECKING:  # imported when used: numpy and ONNX Runtime are not needed on a GPU
    from runtime.greedy import OnnxGreedy

# batch sizes the GPU decoder captures at load (model.chunked): up to 64 requests of 64 names
ENGINE_BUCKETS = (1, 8, 64, 256, 1024, 4096)
# the decoders a one-shot request can be answered by (Engine.decoder)
ONNX_GRAPH = "onnx-graph"  # charrnn_generate.onnx: the whole greedy loop in one ONNX Runtime call
TORCH = "torch"  # model.chunked over the TorchScript step, eager (a CPU worker)
TORCH_CHUNKED = "torch-chunked"  # model.chunked over the TorchScript step, captured CUDA graphs (a GPU worker)
NBEST = "nbest"  # the n-best search (model.nbest) over the TorchScript step


def reachable_steps(limits: Limits) -> int:
    """The most steps one run of the torch loop takes for requests within `limits`, so that the
    GPU captures no position a request cannot reach: a one-shot name has at most max_length
    characters, prefix included; a session row feeds its new characters (at most its whole
    text, max_prefix) and then completes the name up to its max_length, at least one step
    (`Engine._session_wave`)."""
    return max(limits.max_length, limits.max_prefix + 1)


# ---------------------------------------------------------------- the engine


class Engine:
    """Validates requests and decodes them in batches with `model.chunked.ChunkedDecoder` on
    `device` (`self.chunked`: capture on a GPU, eager on CPU)."""

    def __init__(self, step, vocab: Vocab, hidden_shape: tuple[int, int], *, device: str | torch.device = "cpu",
                 limits: Limits | None = None, sessions: SessionStore | None = None,
                 fingerprint: str | None = None, greedy: OnnxGreedy | None = None):
        self.step, self.vocab, self.hidden_shape = step, vocab, tuple(hidden_shape)
        self.greedy = greedy  # charrnn_generate.onnx: greedy one-shot names in one ORT run
        self.device = torch.device(device)
        self.limits = limits or Limits()
        self.sessions = sessions if sessions is not None else SessionStore()
        self.sessions.attach(self.hidden_shape, self.device)  # the state cache, on the device
        self.fingerprint = fingerprint
        self._symbols = vocab.symbols
        if self.device.type == "cuda":
            # parity with CPU results over speed: TF32 could flip a near-tie argmax
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._zero_hidden = torch.zeros(*self.hidden_shape, device=self.device)
        # the one torch loop for one-shot names, streams and session batches: on a GPU it replays
        # chunks of steps captured at warm-up; on CPU it steps eagerly (capture needs CUDA). It
        # scores the names it decodes (each one-shot answer's log-probabilities).
        self.chunked = ChunkedDecoder(step, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                                      hidden_shape=self.hidden_shape, device=self.device, buckets=ENGINE_BUCKETS,
                                      max_steps=reachable_steps(self.limits), max_prefix=self.limits.max_prefix,
                                      score=True)
        self._name_text = NameText(vocab)

    @classmethod
    def from_artifacts(cls, torchscript: str | Path, vocab_json: str | Path | None = None, *,
                       device: str | torch.device = "cpu", limits: Limits | None = None,
                       sessions: SessionStore | None = None, greedy_graph: str | Path | None = None) -> Engine:
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
            from runtime.greedy import OnnxGreedy

            greedy = OnnxGreedy.from_path(greedy_graph, threads=max(1, torch.get_num_threads()))
            greedy.require_export(meta.get("fingerprint"), vocab.symbols, str(torchscript))
        return cls(module, vocab, (meta["num_layers"], meta["hidden_size"]), device=device,
                   limits=limits, sessions=sessions, fingerprint=meta.get("fingerprint"), greedy=greedy)

    # ------------------------------------------------------------ one-shot requests

    def parse_generate(self, payload: object) -> GenerateRequest:
        return parse_generate(payload, self.limits, self.vocab)

    def generate(self, requests: Sequence[GenerateRequest],
                 on_chars: Callable[[int, list[tuple[int, str]]], None] | None = None) -> list[list[str]]:
        """Names per request (`answer` without the log-probabilities)."""
        return [a.names for a in self.answer(requests, on_chars, scores=False)]

    def answer(self, requests: Sequence[GenerateRequest],
               on_chars: Callable[[int, list[tuple[int, str]]], None] | None = None, *,
               scores: bool = True) -> list[Answer]:
        """Names and their log-probabilities per request: the n-best requests by the search
        (serve.answers), the others decoded (`_decode_names`), each decoder scoring its names in
        the same run (the torch loop as it decodes, the one-graph decoder by its `logprob` output)."""
        searched = [i for i, r in enumerate(requests) if self.decoder(r) == NBEST]
        names, decoded_scores = self._decode_names(requests, on_chars, skip=set(searched), scores=scores)
        stepper = TorchStepper(self.step, self.hidden_shape, self.device)
        found = dict(zip(searched, answers.searched_answers(
            stepper, self.vocab, [(requests[i].prefix, requests[i].num, requests[i].max_length) for i in searched],
            max_expansions=self.limits.max_expansions, width=self.limits.nbest_width)))
        # every decoder scores its own names; a scoring pass only for one that did not
        flat = [n for i, got in enumerate(names) if i not in found and decoded_scores[i] is None for n in got]
        logprobs = iter(answers.scores(stepper, self.vocab, flat) if scores and flat else [])
        return [found[i] if i in found else
                Answer(got, (decoded_scores[i] if decoded_scores[i] is not None else [next(logprobs) for _ in got])
                       if scores else [])
                for i, got in enumerate(names)]

    def _decode_names(self, requests: Sequence[GenerateRequest], on_chars, skip: set[int],
                      scores: bool = False) -> tuple[list[list[str]], list[list[float] | None]]:
        """Names per request but those in `skip`. With the one-graph decoder (`greedy`), the greedy
        requests that do not stream are decoded in one run of it; all other requests in one run of
        the torch loop.

        on_chars(request_index, [(name_index, character), ...]) is called after every step for
        each request with `stream` set (streaming reads the step's ids on the host: one sync per
        step, so it is only installed when a request streams).

        Also returns, with `scores`, the log-probabilities the decoder gave with the names (the torch
        loop sums them as it decodes; the one-graph decoder returns them), None where none came.
        """
        names: list[list[str]] = [[] for _ in requests]
        logprobs: list[list[float] | None] = [None] * len(requests)
        by_graph = [self.decoder(r) == ONNX_GRAPH for r in requests]
        for graph in (True, False):
            indices = [i for i, g in enumerate(by_graph) if g == graph and i not in skip]
            if indices:
                got, lps = self._decode_requests([requests[i] for i in indices], indices, graph, on_chars, scores)
                for j, i in enumerate(indices):
                    names[i], logprobs[i] = got[j], (lps[j] if lps is not None else None)
        return names, logprobs

    def decoder(self, request: GenerateRequest) -> str:
        """Which decoder `generate` runs for `request` (the one home of that choice; the handler
        reports it per response): NBEST, ONNX_GRAPH, TORCH (the torch loop, eager on CPU), or
        TORCH_CHUNKED (the torch loop with capture, on a GPU)."""
        if search_of(request) == "nbest":
            return NBEST
        if self.greedy is not None and request.temperature == 0 and not request.stream:
            return ONNX_GRAPH
        return TORCH_CHUNKED if self.chunked.capture else TORCH

    def _decode_requests(self, requests: Sequence[GenerateRequest], indices: list[int], graph: bool,
                         on_chars, scores: bool = False) -> tuple[list[list[str]], list[list[float]] | None]:
        """The names of `requests` (their indices in the whole batch: `indices`) by the one-graph
        decoder (`graph`) or the torch loop: the rows `core.request.make_rows` gives per request
        (greedy rows need no seed; a sampled request's seed is drawn once, `request_seed`, when it
        has none). With `scores`, the names come with their log-probabilities from the same run."""
        starts = [0]
        for r in requests:
            starts.append(starts[-1] + r.num)
        if graph:  # greedy: no seed to draw; the prefix is NFC already (serve.validation)
            rows = []
            for r in requests:
                rows += [Row(tuple(self.vocab.encode(r.prefix)), r.max_length)] * r.num
            if scores:
                ids, logprobs = self.greedy.decode_scored(rows)
            else:
                ids, logprobs = self.greedy.decode(rows), None
            names = [self.vocab.decode(row) for row in ids]
        else:  # the rows built per request, not per row, and the names turned into text in one go
            seeds = [request_seed(r.seed) for r in requests]
            batch = RowBatch.from_groups([self.vocab.encode(r.prefix) for r in requests], [r.num for r in requests],
                                         [r.max_length for r in requests], [r.temperature for r in requests],
                                         [r.top_k for r in requests], seeds)
            on_step = None
            if on_chars is not None:
                streamed = [(indices[j], starts[j], r.num) for j, r in enumerate(requests) if r.stream]
                if streamed:
                    on_step = self._streamer(streamed, on_chars)
            out = self.chunked.run(batch, on_step=on_step)
            names = self._name_text.names(out.ids)
            logprobs = out.scores.tolist() if scores else None  # one copy to the host
        split = [names[starts[j]:starts[j + 1]] for j in range(len(requests))]
        return split, None if logprobs is None else [logprobs[starts[j]:starts[j + 1]] for j in range(len(requests))]

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
        return parse_session(payload, self.limits, self.vocab)

    def session(self, items: Sequence[tuple[str | None, SessionRequest]]) -> list[dict | RequestError]:
        """`session_json`'s answers as objects (tests and tools)."""
        return [a if isinstance(a, RequestError) else json.loads(a) for _, a, _ in self.session_json(items)]

    def session_json(self, items: Sequence[tuple[str | None, SessionRequest]]) -> list[SessionAnswer]:
        """Answer session requests (session id or None for a new session, request), in order:
        (session id, the JSON answer or a RequestError, whether the answer came from the cache).

        An answer is {"session", "text", "next": [{"char", "p"}...], "completion"} ("char" "" is
        end-of-name) plus "completions" and "completions_complete" when asked for, or
        {"session", "closed": true}. A request's text is its `text`, else the session's text
        (serve.sessions.SessionTexts) plus its `append`; a session this engine does not know
        with `append` alone is a 404 that says to send `text`. Requests of one session in one
        batch see each other's texts in order. The answer depends on the text only: cached
        answers are reused, the others computed in one run of the torch loop (`_session_answers`).
        """
        store, texts = self.sessions, self.sessions.texts
        texts.expire()
        out: list = []
        pending: dict[str, str | None] = {}  # this batch's session texts (None: closed), in order
        keys: list[tuple | None] = []
        for sid, req in items:
            if sid is None:
                sid = new_session_id()
                pending[sid] = ""
            if req.close:
                pending[sid] = None
                out.append([sid, json.dumps({"session": sid, "closed": True}, ensure_ascii=False), False])
                keys.append(None)
                continue
            text = req.text
            if text is None:
                base = pending[sid] if sid in pending else texts.get(sid)
                if base is None:
                    out.append([sid, RequestError(
                        f"session {sid!r} is not known here (closed, idle too long, evicted, the server "
                        "restarted, or another server answered it): send the whole 'text' (everything typed "
                        "so far) instead of 'append'; a request with 'text' always works", 404), False])
                    keys.append(None)
                    continue
                text = base + (req.append or "")
            if len(text) > self.limits.max_prefix:
                out.append([sid, RequestError(f"the session's text would be {len(text)} characters long; "
                                              f"the limit is {self.limits.max_prefix}"), False])
                keys.append(None)
                continue
            pending[sid] = text
            out.append([sid, None, False])
            keys.append((text, req.top_k, req.max_length, req.completions))
        for sid, text in pending.items():
            if text is None:
                texts.pop(sid)
            else:
                texts.put(sid, text)

        found = {k: store.answers.get(k) for k in dict.fromkeys(k for k in keys if k is not None)}
        missing = [k for k, a in found.items() if a is None]
        if missing:
            for k, answer in zip(missing, self._session_answers(missing)):
                store.answers.put(k, answer)
                found[k] = answer
        missed = set(missing)
        for row, k in zip(out, keys):
            if k is not None:  # the cached JSON is {"text": ...}: the session id goes first
                row[1] = f'{{"session": {json.dumps(row[0], ensure_ascii=False)}, {found[k][1:]}'
                row[2] = k not in missed
        return [SessionAnswer(*row) for row in out]

    @torch.inference_mode()
    def _session_answers(self, keys: Sequence[tuple[str, int, int, int]]) -> list[str]:
        """The JSON answers (without the session) of (text, top_k, max_length, completions) keys,
        in one run of the torch loop: each text continues from its longest prefix in the state
        cache (feeding only the rest), then decodes its greedy completion; every step's logits
        and hidden state are recorded for the next-character distribution and the text's state,
        which goes into the state cache."""
        vocab, device = self.vocab, self.device
        states = self.sessions.states
        texts = [k[0] for k in keys]
        found = [states.longest(t) for t in texts]  # (cached prefix, slot or None)
        slots = [slot for _, slot in found if slot is not None]
        gathered = iter(states.gather(slots)) if slots else iter(())
        base_hidden = torch.stack([next(gathered) if slot is not None else self._zero_hidden
                                   for _, slot in found])  # [B, L, H]
        fed = [vocab.encode(t[len(prefix):]) for t, (prefix, _) in zip(texts, found)]
        start = Start(
            token=torch.tensor([vocab.encode(prefix[-1])[0] if prefix else vocab.bos_id for prefix, _ in found],
                               dtype=torch.long, device=device),
            hidden=base_hidden.transpose(0, 1).contiguous(),
            name_length=torch.tensor([len(prefix) for prefix, _ in found], dtype=torch.long, device=device),
        )
        # each row forces its new characters, then decodes the greedy completion (>= 1 step, so
        # the step after the last typed character, whose logits we need, always runs)
        rows = [Row(tuple(f), len(f) + max(1, max_length - len(t))) for f, (t, _, max_length, _) in zip(fed, keys)]
        lengths = [len(prefix) for prefix, _ in found]
        out = self.chunked.run(RowBatch.from_rows(rows, lengths), start=start, record=True)
        ids, recorded_logits, recorded_hidden = self.chunked.id_lists(out.ids, rows), out.logits, out.hidden

        batch = len(keys)
        fed_count = torch.tensor([len(f) for f in fed], dtype=torch.long, device=device)
        rows_index = torch.arange(batch, device=device)
        logits = recorded_logits[fed_count, rows_index]  # [B, V] after the whole text
        empty = torch.tensor([not t for t in texts], device=device)
        eos = torch.arange(logits.shape[1], device=device) == vocab.eos_id
        logits = logits.masked_fill(empty.unsqueeze(1) & eos.unsqueeze(0), float("-inf"))
        k = max(top_k for _, top_k, _, _ in keys)
        # the state of each text (after feeding all but its last symbol) for the state cache
        after = recorded_hidden[(fed_count - 1).clamp_min(0), :, rows_index]  # [B, L, H] ([T, L, B, H] recorded)
        states.put_many(texts, torch.where((fed_count == 0).view(batch, 1, 1), base_hidden, after))
        top_host = []
        if k:  # one copy to the host for probabilities and symbols together
            top = torch.softmax(logits, dim=1).topk(k, dim=1)
            top_host = torch.cat([top.values, top.indices.to(top.values.dtype)], dim=1).tolist()

        bodies = []
        for row, ((text, top_k, max_length, _), f) in enumerate(zip(keys, fed)):
            completion = (text + vocab.decode(ids[row][len(f):]))[: max(max_length, len(text))]
            candidates = []
            if top_k:
                probs, symbols = top_host[row][:k], top_host[row][k:]
                for p, s in zip(probs[:top_k], symbols[:top_k]):
                    s = int(s)
                    candidates.append({"char": "" if s == vocab.eos_id else self._symbols[s], "p": round(p, 6)})
            bodies.append({"text": text, "next": candidates, "completion": completion})
        self._add_completions(keys, bodies)
        return [json.dumps(a, ensure_ascii=False) for a in bodies]

    def _add_completions(self, keys, bodies: list[dict]) -> None:
        """Each answer's top whole names ("completions": [{"name", "logprob"}], best first, and
        "completions_complete") from the n-best search over the session's text (serve.answers)."""
        wanted = [(i, text, n, max_length) for i, (text, _, max_length, n) in enumerate(keys) if n]
        found = answers.completions(TorchStepper(self.step, self.hidden_shape, self.device), self.vocab,
                                    [w[1:] for w in wanted], max_expansions=self.limits.max_expansions,
                                    width=self.limits.nbest_width)
        for (i, *_), (names, complete) in zip(wanted, found):
            bodies[i]["completions"] = names
            bodies[i]["completions_complete"] = complete

    # ------------------------------------------------------------ misc

    def warm_up(self) -> None:
        """Run each path once, so the first real request does not pay TorchScript's profiling;
        on a GPU, capture the chunked decoder's graphs first (never on the request path)."""
        self.chunked.warm_up(modes=MODES, record=True)
        for _ in range(3):
            self.generate([GenerateRequest(num=2), GenerateRequest(prefix=self.vocab.characters[0],
                                                                   temperature=1.0, top_k=3, seed=1)])
            # a new session, then its continuation (from the state cache), then the caches emptied
            # so that the next round and the first real requests compute again
            [(sid, _, _)] = self.session_json([(None, SessionRequest(text=self.vocab.characters[0]))])
            self.session_json([(sid, SessionRequest(append=self.vocab.characters[0]))])
            self.sessions.texts.pop(sid)
            self.sessions.clear_caches()
