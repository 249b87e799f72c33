"""The N most probable names: an exact best-first search over prefixes, and the log-probability
of any name under the model (torch-free; numpy is imported only when a search or a score runs on it).

One home for the search loop, shared by every runtime: the torch backends (eager, TorchScript,
the server, via model.nbest_torch.TorchStepper) and ONNX Runtime (runtime.generator, via
NumpyStepper). A runtime supplies only a batched step over opaque states:

    stepper.root() -> state                      # the state before the first input token
    stepper(tokens, states) -> (logits, states)  # logits: float array [B, V]; states: B new states
    stepper.zeros(B), stepper.run(tokens, state) # the same step on one batched state (scoring)
    stepper.ops (optional)                       # the array operations on its logits (ArrayOps;
                                                 # default: numpy's)

The search and scoring loops are plain Python over the few array operations of `ArrayOps`, so
the torch stepper can run them with torch's own (model.nbest_torch: a GPU machine with PyTorch
alone, no numpy) and get the same names.

A node's state is the hidden state before its last symbol is fed; a step feeds that symbol to
many nodes at once (the frontier's best prefixes) and its new states are shared by the nodes'
children.

What "probability" means (the same in the search, `score` and every twin, e.g. JavaScript):
- log p(name) = sum over positions t = 0..len(name) of log_softmax(logits_t)[target_t], where
  the targets are the name's symbols, then the end token; natural log, temperature 1.
- At the first position the end token is excluded (a name has at least one character, as in
  the greedy decoder): that position's log-softmax is taken over the other symbols only.
- The log-softmax is computed in float64 from the step's float32 logits; the sum runs in float64
  from 0.0 along the name, in order.
- A name is complete when the model ends it within `max_length` characters (prefix included);
  a node of `max_length` characters can only end.

Exactness: every extension adds a log-probability <= 0, so when a complete name is the best
entry of the frontier, no other name can beat it. Ties are broken by the symbol ids: the order is
(log-probability descending, ids ascending lexicographically, a proper prefix first), which is
exactly the heap order of (-logp, ids). Expanding extra frontier nodes per step call (batching)
never changes the answer, only the work. Known complete names give an exact pruning threshold:
once `num` complete names are known, a prefix below the num-th best of them cannot reach the
top `num` (extensions only lower it) and is dropped.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.request import make_rows

SEARCHES = ("greedy", "nbest")  # the explicit values of a request's "search" field
DEFAULT_MAX_EXPANSIONS = 10000  # frontier prefixes expanded per search (one row of a step call each)
DEFAULT_WIDTH = 32  # most frontier prefixes expanded in one step call


@dataclass(frozen=True)
class NBest:
    """A search's answer. `ids`: the names' symbol ids (prefix included, end token excluded),
    best first; `complete`: False when the expansion bound stopped the search before `num` names
    were proven (the list holds the proven ones, still the true best, in order)."""

    ids: list[tuple[int, ...]]
    logprobs: list[float]
    complete: bool
    expansions: int  # frontier prefixes expanded (rows of step calls), prefix feeding excluded
    step_calls: int  # step calls, prefix feeding included


def choose_search(search: str | None, num: int, temperature: float, stream: bool = False) -> str:
    """What one request runs: "nbest", "greedy" (the greedy loop) or "sample".

    Default (search None): sampling when temperature > 0; the n-best search when temperature is
    0 and num > 1 (a name repeated num times is never what is wanted), unless the request
    streams (streaming is a property of the decoding loop); the greedy name for num 1.
    An explicit "nbest" needs temperature 0 and no streaming; an explicit "greedy" needs
    temperature 0. Raises ValueError naming the conflict."""
    if search is not None and search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(map(repr, SEARCHES))}, got {search!r}")
    if search == "nbest":
        if temperature > 0:
            raise ValueError("search 'nbest' returns the most probable names: it needs temperature 0")
        if stream:
            raise ValueError("search 'nbest' cannot stream: names are known only when proven")
        return "nbest"
    if search == "greedy":
        if temperature > 0:
            raise ValueError("search 'greedy' needs temperature 0 (a temperature above 0 samples)")
        return "greedy"
    if temperature > 0:
        return "sample"
    return "nbest" if num > 1 and not stream else "greedy"


class ArrayOps:
    """The array operations the search and scoring run on a stepper's logits, one backend each
    (numpy here, torch in model.nbest_torch); every rule lives in the loops below, these only
    compute. Arrays are 2-D [B, V] float64 unless said otherwise."""

    def array(self, values: Sequence, dtype: str):
        """A 1-D array of Python values; dtype "float" (float64), "bool" or "int" (int64)."""
        raise NotImplementedError

    def log_softmax(self, logits, first: Sequence[bool], eos_id: int):
        """float64 log-softmax of `logits` [B, V]; rows where `first` holds exclude the end token
        (see the module docstring)."""
        raise NotImplementedError

    def where(self, condition, a, b):
        raise NotImplementedError

    def argsort_stable(self, x):
        """Each row's ascending order (equal values keep their column order)."""
        raise NotImplementedError

    def take(self, x, index):
        """x[i, index[i, j]] for each i, j (index int64 [B, K])."""
        raise NotImplementedError


class NumpyOps(ArrayOps):
    def __init__(self):
        import numpy  # here, not at import: the torch stepper works without it

        self.np = numpy

    def array(self, values, dtype):
        return self.np.array(values, dtype={"float": self.np.float64, "bool": bool, "int": self.np.int64}[dtype])

    def log_softmax(self, logits, first, eos_id):
        np = self.np
        x = np.array(logits, dtype=np.float64)  # a copy: the end token's column may be masked
        first = np.asarray(first, dtype=bool)
        if first.any():
            x[first, eos_id] = -np.inf
        top = x.max(axis=1, keepdims=True)
        return x - (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))

    def where(self, condition, a, b):
        return self.np.where(condition, a, b)

    def argsort_stable(self, x):
        return self.np.argsort(x, axis=1, kind="stable")

    def take(self, x, index):
        return self.np.take_along_axis(x, index, axis=1)


_NUMPY: list[NumpyOps] = []


def numpy_ops() -> NumpyOps:
    """The numpy backend (created once, when first needed)."""
    if not _NUMPY:
        _NUMPY.append(NumpyOps())
    return _NUMPY[0]


def ops_of(stepper) -> ArrayOps:
    ops = getattr(stepper, "ops", None)
    return ops if ops is not None else numpy_ops()


def log_softmax(logits, first: Sequence[bool] | None, eos_id: int, ops: ArrayOps | None = None):
    """float64 log-softmax of `logits` [B, V]; rows where `first` is True exclude the end token."""
    ops = ops or numpy_ops()
    return ops.log_softmax(logits, [False] * len(logits) if first is None else list(first), eos_id)


def ranked_children(ops: ArrayOps, lp, parent_logps: Sequence[float], lengths: Sequence[int], max_length: int,
                    bos_id: int, eos_id: int) -> tuple[list[int], list[list[int]], list[list[float]]]:
    """Every expanded row's children at once: each row's log-probabilities [B, V] (float64,
    summed in the same order as `score`), the symbols allowed, then each row sorted in the
    frontier's order among siblings: log-prob descending, then the end token (a proper prefix
    sorts first), then id. Returns (allowed count, symbols, log-probs) per row, best first."""
    vocab = lp.shape[1]
    # the columns in the tie order (end token first, then ids ascending): a stable sort of the
    # log-probs over them breaks ties that way
    tie_order = [eos_id] + [v for v in range(vocab) if v != eos_id]
    characters = ops.array([v not in (bos_id, eos_id) for v in tie_order], "bool")
    allowed = ops.array([n < max_length for n in lengths], "bool")[:, None] & characters[None, :]
    allowed[:, 0] = ops.array([n > 0 for n in lengths], "bool")  # column 0 is the end token: a name has >= 1 character
    child = (ops.array(list(parent_logps), "float")[:, None] + lp)[:, tie_order]
    child = ops.where(allowed, child, -math.inf)
    order = ops.argsort_stable(-child)
    ranked = ops.take(child, order)
    counts = (ranked > -math.inf).sum(1).tolist()
    symbols = ops.array(tie_order, "int")[order]
    return counts, symbols.tolist(), ranked.tolist()


def search(stepper, prefix: Sequence[int], num: int, *, max_length: int, bos_id: int, eos_id: int,
           max_expansions: int = DEFAULT_MAX_EXPANSIONS, width: int = DEFAULT_WIDTH) -> NBest:
    """The `num` most probable distinct complete names that start with `prefix` and have at most
    `max_length` characters, best first (see the module docstring for the order and the bound)."""
    return search_many(stepper, [(prefix, num, max_length)], bos_id=bos_id, eos_id=eos_id,
                       max_expansions=max_expansions, width=width)[0]


def search_many(stepper, queries: Sequence[tuple[Sequence[int], int, int]], *, bos_id: int, eos_id: int,
                max_expansions: int = DEFAULT_MAX_EXPANSIONS, width: int = DEFAULT_WIDTH) -> list[NBest]:
    """`search` for each (prefix, num, max_length) of `queries`, all in lockstep: each step call
    carries every unfinished search's rows (their prefixes fed side by side, then their frontier
    batches), so a batch of requests costs about as many step calls as its hardest search. Each
    search's answer is the one it gives alone; `step_calls` counts the calls it took part in."""
    ops = ops_of(stepper)
    searches = [_search(tuple(int(i) for i in prefix), num, max_length, stepper.root(), bos_id, eos_id,
                        max_expansions, width, ops) for prefix, num, max_length in queries]
    return _drive(stepper, searches)


def _drive(stepper, searches: list) -> list:
    """Run generator-searches to the end: each yields (tokens, states) and is sent back
    (logits, new states) for its rows; all pending rows share one step call."""
    results: list = [None] * len(searches)
    pending: dict[int, tuple] = {}

    def advance(i: int, value) -> None:
        try:
            pending[i] = searches[i].send(value)
        except StopIteration as done:
            pending.pop(i, None)
            results[i] = done.value

    for i in range(len(searches)):
        advance(i, None)
    while pending:
        order = list(pending)
        tokens = [t for i in order for t in pending[i][0]]
        logits, states = stepper(tokens, [s for i in order for s in pending[i][1]])
        start = 0
        for i in order:
            n = len(pending[i][0])
            advance(i, (logits[start:start + n], states[start:start + n]))
            start += n
    return results


def _search(prefix: tuple[int, ...], num: int, max_length: int, root, bos_id: int, eos_id: int,
            max_expansions: int, width: int, ops: ArrayOps):
    """The search as a generator (see _drive). Children enter the frontier lazily: an expanded
    prefix's children (its end token, giving a complete name, and its characters) are sorted
    once in the frontier's order and only the first is pushed; popping one pushes the next. So
    the frontier holds a few entries per expanded prefix, not the whole vocabulary, and the
    order of pops is unchanged."""
    if num < 1 or width < 1 or max_expansions < 0:
        raise ValueError("num and width must be >= 1 and max_expansions >= 0")
    if max_length < max(1, len(prefix)):
        raise ValueError(f"max_length {max_length} is shorter than the prefix ({len(prefix)}) or < 1")
    state, token, logp = root, bos_id, 0.0  # feed the prefix, one symbol per step call
    for t, symbol in enumerate(prefix):
        logits, states = yield [token], [state]
        logp += float(ops.log_softmax(logits, [t == 0], eos_id)[0, symbol])
        state, token = states[0], symbol
    calls = len(prefix)
    # entries: (-logp, ids, kind, link); kind 0 = a complete name, 1 = a prefix to expand.
    # (ids, kind) is unique, so links are never compared. link: (siblings, position) or None.
    frontier: list = [(-logp, prefix, 1, None)]
    known: list[float] = []  # min-heap of the best `num` complete log-probabilities pushed
    results: list[tuple[tuple[int, ...], float]] = []
    expansions = 0

    def pop():
        entry = heapq.heappop(frontier)
        link = entry[3]
        if link is not None and link[1] + 1 < len(link[0].logps):  # the next sibling enters
            push(link[0], link[1] + 1)
        return entry

    def push(sib: _Siblings, i: int) -> None:
        lp, v = sib.logps[i], sib.symbols[i]
        if v == eos_id:
            heapq.heappush(frontier, (-lp, sib.parent, 0, (sib, i)))
            if len(known) < num:
                heapq.heappush(known, lp)
            elif lp > known[0]:
                heapq.heapreplace(known, lp)
        else:
            heapq.heappush(frontier, (-lp, sib.parent + (v,), 1, (sib, i)))

    while frontier and len(results) < num:
        floor = known[0] if len(known) == num else -math.inf
        if -frontier[0][0] < floor:  # nothing left can reach the top `num` (extensions only lower)
            break
        if frontier[0][2] == 0:  # the best entry is a complete name: proven
            neg, ids, _, _ = pop()
            results.append((ids, -neg))
            continue
        if expansions >= max_expansions:
            break
        batch = []
        while (frontier and frontier[0][2] == 1 and -frontier[0][0] >= floor and len(batch) < width
               and expansions + len(batch) < max_expansions):
            batch.append(pop())
        tokens = [ids[-1] if ids else bos_id for _, ids, _, _ in batch]
        logits, states = yield tokens, [_state_of(entry, state) for entry in batch]
        calls += 1
        expansions += len(batch)
        lp = ops.log_softmax(logits, [not ids for _, ids, _, _ in batch], eos_id)
        counts, order, ranked_lp = ranked_children(ops, lp, [-neg for neg, *_ in batch],
                                                   [len(ids) for _, ids, _, _ in batch], max_length, bos_id, eos_id)
        for row, (_, ids, _, _) in enumerate(batch):
            if counts[row]:
                n = counts[row]
                push(_Siblings(ids, order[row][:n], ranked_lp[row][:n], states[row]), 0)
    done = len(results) == num or not frontier or (
        len(known) == num and -frontier[0][0] < known[0])
    return NBest([ids for ids, _ in results], [lp for _, lp in results], done, expansions, calls)


@dataclass
class _Siblings:
    """The children of one expanded prefix, sorted in the frontier's order."""

    parent: tuple[int, ...]
    symbols: list[int]
    logps: list[float]
    state: object  # the state after feeding the parent's last symbol: its children's state


def _state_of(entry, root_state):
    link = entry[3]
    return root_state if link is None else link[0].state


def score(stepper, names: Sequence[Sequence[int]], *, bos_id: int, eos_id: int) -> list[float]:
    """log p(name) of each name (symbol ids, end token excluded) under the module docstring's
    definition, all names in one batch: one step call per position of the longest name (the
    stepper's dense `run` over one batched state; rows past their end feed the end token and
    are not counted)."""
    names = [tuple(int(i) for i in n) for n in names]
    totals = [0.0] * len(names)
    if not names:
        return totals
    ops = ops_of(stepper)
    width = max(len(n) for n in names) + 1
    # position t feeds the name's symbol t - 1 (the start token at 0) and targets symbol t (the end
    # token after the last); rows past their end feed and target the end token
    inputs = [[bos_id, *n] + [eos_id] * (width - 1 - len(n)) for n in names]
    targets = [[*n] + [eos_id] * (width - len(n)) for n in names]
    state = stepper.zeros(len(names))
    for t in range(width):
        logits, state = stepper.run([row[t] for row in inputs], state)
        lp = ops.log_softmax(logits, [t == 0] * len(names), eos_id)
        picked = ops.take(lp, ops.array([[row[t]] for row in targets], "int")).tolist()
        for i, n in enumerate(names):  # in position order, float64, as `search` sums
            if len(n) >= t:
                totals[i] += float(picked[i][0])
    return totals


class NumpyStepper:
    """A stepper over a numpy step `(char int64 [B], hidden float32 [L, B, H]) -> (logits, hidden)`,
    e.g. runtime.step.OnnxStep; states are [L, H] arrays (views into a step's output)."""

    def __init__(self, step: Callable, hidden_shape: tuple[int, int]):
        self.step, self.hidden_shape = step, tuple(hidden_shape)
        self.ops = numpy_ops()
        self.np = self.ops.np

    def root(self):
        return self.np.zeros(self.hidden_shape, dtype=self.np.float32)

    def zeros(self, batch: int):
        return self.np.zeros((self.hidden_shape[0], batch, self.hidden_shape[1]), dtype=self.np.float32)

    def run(self, tokens, hidden):
        """The step itself on a batched state: (logits [B, V], hidden [L, B, H])."""
        np = self.np
        logits, hidden = self.step(np.asarray(tokens, dtype=np.int64), hidden)
        return np.asarray(logits), np.asarray(hidden)

    def __call__(self, tokens: Sequence[int], states: Sequence):
        np = self.np
        logits, hidden = self.step(np.asarray(tokens, dtype=np.int64), np.stack(states, axis=1))
        return np.asarray(logits), list(np.moveaxis(np.asarray(hidden), 1, 0))


def ranked(gen, prefixes: Sequence[str], *, num: int, max_length: int, temperature: float, top_k: int,
           seed: int | None, search: str | None, max_expansions: int, scores: bool):
    """Per prefix (names, log-probabilities, complete) from a generator with `vocab`, `nbest`,
    `generate_rows` and `logprobs` (model.generate.TorchGenerator, runtime.generator.NameGenerator),
    by the server's rule (choose_search); log-probabilities stay empty unless `scores`."""
    if choose_search(search, num, temperature) == "nbest":
        out = []
        for p in prefixes:
            found = gen.nbest(p, num=num, max_length=max_length, max_expansions=max_expansions)
            out.append(([gen.vocab.decode(i) for i in found.ids], found.logprobs, found.complete))
        return out
    rows = [row for p in prefixes for row in make_rows(gen.vocab, p, num=num, max_length=max_length,
                                                       temperature=temperature, top_k=top_k, seed=seed)]
    names = gen.generate_rows(rows)
    logprobs = gen.logprobs(names) if scores else []
    return [(names[i:i + num], logprobs[i:i + num], True) for i in range(0, len(names), num)]
