"""The torch decoding loop (model.chunked) on CPU: eager, and the GPU's captured protocol with a
stand-in for the graphs.

It must give exactly the plain reference loop's names (tests/reference_decode.py) for every kind
of row, whatever the buckets, the chunk size, the padding and the gathering of live rows; the
vectorised host work (model.batch) must equal the per-row code it replaces.
"""

import math
import random

import pytest
import torch

from core.request import Row, make_rows
from core.vocab import Vocab
from model import nbest
from model.batch import NameText, RowBatch
from model.checkpoint import load_checkpoint
from model.chunked import GREEDY, SAMPLE, TOP_K, ChunkedDecoder
from model.decode import Start, decode
from model.nbest_torch import TorchStepper
from tests.conftest import assert_close
from tests.conftest import reference_loaded as reference
from tests.replaying_graphs import ReplayingGraphs


class _Recorder:
    """Wraps a step to keep each step's logits and hidden output: what a session reads from a
    recorded run, kept here by the step itself as an independent witness of `record=True`."""

    def __init__(self, step):
        self.step, self.logits, self.hidden = step, [], []

    def __call__(self, token, hidden):
        logits, hidden = self.step(token, hidden)
        self.logits.append(logits)
        self.hidden.append(hidden)
        return logits, hidden


def chunked(loaded, captured: bool = False, **kw) -> ChunkedDecoder:
    """The decoder over the eager model; captured: the GPU's protocol (buckets, padding, chunks
    of steps, one flag read per chunk) with ReplayingGraphs standing in for CUDA graphs."""
    model, vocab = loaded
    if captured:
        kw.update(capture=True, graphs=ReplayingGraphs())
    return ChunkedDecoder(model.step, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                          hidden_shape=(model.num_layers, model.hidden_size), **kw)


def mixed_rows(vocab, n=60, seed=0):
    rnd = random.Random(seed)
    chars = vocab.characters
    rows = []
    for i in range(n):
        prefix = tuple(vocab.encode("".join(rnd.choice(chars) for _ in range(rnd.choice((0, 0, 1, 2, 5))))))
        temperature = rnd.choice((0.0, 0.0, 0.3, 0.6, 1.0, 1.7))
        rows.append(Row(prefix, max(1, len(prefix)) + rnd.randrange(0, 20), temperature,
                        rnd.choice((0, 0, 1, 3, 100)), rnd.randrange(2**32)))
    return rows


@pytest.mark.parametrize("captured,buckets,chunk,compact", [
    (False, (64,), 8, True), (False, (64,), 8, False), (True, (1, 8, 64, 256), 8, True), (True, (16,), 3, True),
    (True, (128,), 1, False), (True, (7, 64), 5, True)])
def test_every_kind_of_row_decodes_exactly_as_the_reference(loaded, captured, buckets, chunk, compact):
    """Greedy, sampled, top-k, prefixes and length caps mixed in one batch; eager (gathering the
    live rows or not), or captured: padded to a bucket, or cut into several when it is larger
    than the largest one."""
    _, vocab = loaded
    rows = mixed_rows(vocab)
    decoder = chunked(loaded, captured, buckets=buckets, chunk=chunk, compact=compact)
    assert decoder.decode(rows) == reference(loaded, rows)


@pytest.mark.parametrize("captured", [False, True])
@pytest.mark.parametrize("kind", ["greedy", "sampled", "top_k"])
def test_a_batch_of_one_kind_decodes_exactly_as_the_reference(loaded, kind, captured):
    _, vocab = loaded
    knobs = {"greedy": {}, "sampled": {"temperature": 1.0, "seed": 3}, "top_k": {"temperature": 0.8, "top_k": 4, "seed": 5}}
    rows = make_rows(vocab, "", num=40, **knobs[kind]) + make_rows(vocab, "Ma", num=9, **knobs[kind])
    decoder = chunked(loaded, captured, buckets=(1, 64))
    assert decoder.mode(RowBatch.from_rows(rows)) == {"greedy": GREEDY, "sampled": SAMPLE, "top_k": TOP_K}[kind]
    assert decoder.decode(rows) == reference(loaded, rows)


@pytest.mark.parametrize("captured", [False, True])
def test_a_row_ends_at_its_end_token_or_length_cap(loaded, captured):
    """The end test, in the run's own output (ids, before they are cut into names): each row has
    at most max_length symbols, and only end tokens after its first one."""
    _, vocab = loaded
    rows = mixed_rows(vocab, n=80, seed=5)
    out = chunked(loaded, captured, buckets=(8, 128), chunk=4).run(RowBatch.from_rows(rows))
    eos, capped = vocab.eos_id, 0
    for ids, row in zip(out.ids.tolist(), rows):
        length = ids.index(eos) if eos in ids else len(ids)
        assert length <= row.max_length and set(ids[length:]) <= {eos}, (row, ids)
        capped += length == row.max_length
    assert 0 < capped < len(rows)  # both ways of ending occur


def test_all_rows_done_stops_after_the_chunk_where_they_end(loaded):
    decoder = chunked(loaded, True, buckets=(8,), chunk=2, max_steps=64)
    short = RowBatch.from_rows([Row((), max_length=3)] * 5)
    out = decoder.run(short)
    assert out.chunks == 2 and out.syncs == 1 and out.steps == 3  # 3 steps = 2 chunks, 1 flag read
    long = RowBatch.from_rows([Row((), max_length=64)] * 5)
    out = decoder.run(long)
    ended = max(len(ids) for ids in reference(loaded, [Row((), max_length=64)])) + 1  # its end token
    assert out.chunks == -(-ended // 2) < 32  # stopped early, not at the cap
    assert out.syncs == out.chunks - (out.chunks == 32)
    eager = chunked(loaded, buckets=(8,), max_steps=64).run(long)  # on CPU: a flag read per step
    assert eager.steps == ended and eager.syncs == ended


def test_padding_rows_do_not_change_the_real_rows(loaded):
    _, vocab = loaded
    rows = make_rows(vocab, "J", num=3, temperature=1.2, seed=11)
    alone = chunked(loaded, True, buckets=(3,)).decode(rows)
    assert chunked(loaded, True, buckets=(1024,)).decode(rows) == alone == reference(loaded, rows)


def test_continuing_from_a_start_state_and_recording_equal_decode_with_a_recorder(loaded):
    """The session path: rows continue from a per-row token/hidden state and every step's
    logits and hidden state are kept, as a step wrapper sees them."""
    model, vocab = loaded
    torch.manual_seed(0)
    n = 5
    start = Start(token=torch.tensor(vocab.encode("AMJLS")), hidden=torch.randn(1, n, model.hidden_size) * 0.5,
                  name_length=torch.tensor([0, 1, 2, 0, 4]))
    rows = [Row(tuple(vocab.encode(fed)), len(fed) + cap) for fed, cap in
            [("", 10), ("a", 4), ("ri", 12), ("", 1), ("nd", 30)]]
    recorder = _Recorder(model.step)
    want = decode(recorder, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=(1, model.hidden_size), start=start)
    decoder = chunked(loaded, buckets=(8,), chunk=3)
    out = decoder.run(RowBatch.from_rows(rows, start.name_length.tolist()), start=start, record=True)
    assert decoder.decode(rows, start=start) == want
    steps = len(recorder.logits)
    # exactly: both eager runs step the same 5 rows with the same step, so the same kernels run
    # on the same inputs (a recorded value must be the step's own, not recomputed)
    assert torch.equal(out.logits[:steps], torch.stack(recorder.logits))
    assert torch.equal(out.hidden[:steps], torch.stack(recorder.hidden))


def test_on_step_reports_what_decode_reports(loaded):
    _, vocab = loaded
    rows = make_rows(vocab, "L", num=3, temperature=0.9, seed=2)
    seen, want = [], []
    reference(loaded, rows, on_step=lambda t, tok, live: want.append((t, tok.tolist(), live.tolist())))
    chunked(loaded, buckets=(4,), chunk=4).decode(
        rows, on_step=lambda t, tok, live: seen.append((t, tok[:3].tolist(), live[:3].tolist())))
    assert seen[: len(want)] == want and not any(any(live) for _, _, live in seen[len(want):])


def test_gathering_live_rows_gives_the_same_ids_as_keeping_them(loaded):
    _, vocab = loaded
    rows = mixed_rows(vocab, n=200, seed=4)
    batch = RowBatch.from_rows(rows)
    kept = chunked(loaded, buckets=(256,), chunk=2, compact=False).run(batch)
    gathering = chunked(loaded, buckets=(256,), chunk=2, compact=True)
    gathering.run(RowBatch.from_rows(make_rows(vocab, "", num=256, max_length=64, temperature=3.0, seed=1)))
    gathered = gathering.run(batch)  # over the previous run's output buffer
    assert torch.equal(kept.ids, gathered.ids)


@pytest.mark.parametrize("captured", [False, True])
def test_no_name_is_empty_unless_a_session_continues_it(loaded, captured):
    """At a high temperature the end token is often drawn at the first position; it must be
    masked there, as decode masks it, except for rows continuing a name (name_length > 0)."""
    model, vocab = loaded
    rows = make_rows(vocab, "", num=300, temperature=8.0, seed=3)
    got = chunked(loaded, captured, buckets=(512,)).decode(rows)
    assert got == reference(loaded, rows) and all(got)
    start = Start(token=torch.tensor(vocab.encode("a") * 300), hidden=torch.zeros(1, 300, model.hidden_size),
                  name_length=torch.full((300,), 3))
    continued = chunked(loaded, captured, buckets=(512,)).decode(rows, start=start)
    assert continued == reference(loaded, rows, start=start) and not all(continued)


def test_rows_beyond_the_decoders_sizes_are_refused_with_the_reason(loaded):
    _, vocab = loaded
    decoder = chunked(loaded, buckets=(8,), max_steps=10, max_prefix=8)
    with pytest.raises(ValueError, match="max_length 11 is over this decoder's max_steps"):
        decoder.run(RowBatch.from_rows([Row((), max_length=11)]))
    with pytest.raises(ValueError, match="prefix of 9 symbols"):
        decoder.run(RowBatch.from_rows([Row(tuple(vocab.encode("Mariaaaaa")), max_length=10)]))
    with pytest.raises(ValueError, match="capture"):
        chunked(loaded, capture=True)


def test_row_batch_from_groups_holds_what_make_rows_gives(loaded):
    _, vocab = loaded
    groups = [("Ma", 3, 10, 0.7, 2, 5), ("", 1, 24, 0.0, 0, 0), ("Jo", 4, 6, 1.5, 0, 2**32 - 1)]
    rows = [r for p, n, m, t, k, s in groups for r in make_rows(vocab, p, num=n, max_length=m, temperature=t,
                                                                   top_k=k, seed=s)]
    batch = RowBatch.from_groups([vocab.encode(g[0]) for g in groups], *[[g[i] for g in groups] for i in range(1, 6)])
    want = RowBatch.from_rows(rows)
    for field in ("prefix", "prefix_len", "max_length", "temperature", "top_k", "seed", "name_length"):
        assert torch.equal(getattr(batch, field), getattr(want, field)), field
    later = RowBatch.from_groups([vocab.encode("Ma")], [2], [10], [0.7], [2], [5], first_index=1)
    assert torch.equal(later.seed, want.seed[1:3])
    # past SMALL rows the seeds are hashed as tensors: the same values
    many = RowBatch.from_groups([vocab.encode("J"), []], [70, 1], [9, 24], [1.0, 0.0], [0, 0], [77, 3])
    assert many.seed.tolist() == [r.seed for r in make_rows(vocab, "J", num=70, seed=77) + make_rows(vocab, "", seed=3)]


@pytest.mark.parametrize("bad,message", [({"max_lengths": [1]}, "group 0: max_length 1 is shorter than the prefix"),
                                         ({"temperatures": [float("nan")]}, "temperature must be a finite"),
                                         ({"top_ks": [-1]}, "top_k must be >= 0"),
                                         ({"seeds": [2**32]}, "seed must be in")])
def test_row_batch_refuses_bad_fields_naming_them(bad, message):
    args = {"prefixes": [[1, 2]], "nums": [1], "max_lengths": [5], "temperatures": [1.0], "top_ks": [0], "seeds": [0]}
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        RowBatch.from_groups(**args)


def test_name_text_is_vocab_decode_of_every_row():
    vocab = Vocab.from_names(["Ana Júlia", "Zoë", "Mârcio"])
    rnd = random.Random(1)
    ids = torch.tensor([[rnd.randrange(len(vocab)) for _ in range(9)] for _ in range(300)])
    ids[::7, 0] = vocab.eos_id  # empty names, and ids after an end token, included
    names = NameText(vocab).names(ids)
    assert names == [vocab.decode(row) for row in ids.tolist()]
    assert NameText(vocab).names(ids[:9]) == names[:9]  # a few rows: the per-row path
    skip = torch.tensor([rnd.randrange(4) for _ in range(300)])
    assert NameText(vocab).names(ids, skip) == [vocab.decode(row[s:]) if vocab.eos_id not in row[:s] else ""
                                                for row, s in zip(ids.tolist(), skip.tolist())]
    assert NameText(vocab).text(ids[:0]) == ""
    with pytest.raises(ValueError, match="cannot appear inside a name line"):
        NameText(Vocab(("<s>", "a", "\n")))


def test_the_captured_protocol_gives_decodes_names_and_replays_only(loaded):
    model, vocab = loaded
    graphs = ReplayingGraphs()
    decoder = chunked(loaded, buckets=(1, 8, 64), max_steps=40, chunk=4, capture=True, graphs=graphs)
    assert decoder.warm_up(sizes=[50, 2], record=True) == 2 * (1 + 4 * 10)  # per bucket: load, 4 variants x 10 chunks
    assert ("load",) in graphs.captured and ("top_k", False, 9) in graphs.captured
    rows = [r for r in mixed_rows(vocab, n=50, seed=7) if r.max_length <= 40]
    before = graphs.replays
    out = decoder.run(RowBatch.from_rows(rows))
    assert graphs.replays - before == 1 + out.chunks and decoder.eager_chunks == 0
    assert decoder.id_lists(out.ids, rows) == reference(loaded, rows)
    # sessions: continuing rows, recording each step
    start = Start(token=torch.tensor(vocab.encode("MJ")), hidden=torch.zeros(1, 2, model.hidden_size),
                  name_length=torch.tensor([1, 0]))
    fed = [Row(tuple(vocab.encode("ar")), 12), Row((), 6)]
    recorder = _Recorder(model.step)
    want = decode(recorder, fed, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=(1, model.hidden_size),
                  start=start)
    out = decoder.run(RowBatch.from_rows(fed, [1, 0]), start=start, record=True)
    assert decoder.id_lists(out.ids, fed) == want and decoder.eager_chunks == 0
    # the ids exactly; the recorded values by the parity rule: the captured run stepped the 2 rows
    # padded to a bucket of 8, the recorder's decode stepped 2 (another matrix-product shape,
    # whose rounding may differ: docs/numerics.md)
    steps = len(recorder.logits)
    assert_close(out.logits[:steps], torch.stack(recorder.logits), "recorded logits")
    assert_close(out.hidden[:steps], torch.stack(recorder.hidden), "recorded hidden states")
    # a bucket that was not warmed up still decodes, eagerly, and says so
    assert decoder.decode(rows[:1]) == reference(loaded, rows[:1]) and decoder.eager_chunks > 0


@pytest.mark.parametrize("captured,buckets,chunk,compact", [
    (False, (64,), 8, True), (False, (64,), 8, False), (True, (8, 64), 8, True), (True, (16,), 3, True),
    (True, (128,), 1, False), (True, (7, 64), 4, True)])
def test_a_scoring_decoder_returns_each_names_log_probability(loaded, captured, buckets, chunk, compact):
    """score=True: each row's log p(name) as model.nbest.score computes it (a second pass over
    the names), for every kind of row, names cut at their length cap included (their end token
    is scored one step later, also when the cap is the run's last step), eager (gathering live
    rows or not) or captured (padded, or cut into pieces); the names are those of a decoder
    that does not score."""
    model, vocab = loaded
    rows = mixed_rows(vocab, n=70, seed=4) + [Row((), 1), Row(tuple(vocab.encode("Ma")), 2, 1.0, 0, 9)]
    longest = max(r.max_length for r in rows)
    rows.append(Row(tuple(vocab.encode("J" * 3)), longest, 2.0, 0, 1))  # likely capped at the run's last step
    plain = chunked(loaded, captured, buckets=buckets, chunk=chunk, compact=compact, max_steps=longest)
    scoring = chunked(loaded, captured, buckets=buckets, chunk=chunk, compact=compact, max_steps=longest, score=True)
    out = scoring.run(RowBatch.from_rows(rows))
    ids = scoring.id_lists(out.ids, rows)
    assert ids == plain.decode(rows) == reference(loaded, rows) and out.ids.shape[1] <= longest
    want = nbest.score(TorchStepper(model.step, (model.num_layers, model.hidden_size)), ids,
                       bos_id=vocab.bos_id, eos_id=vocab.eos_id)
    got = out.scores.tolist()
    assert out.scores.dtype == torch.float64 and len(got) == len(rows)
    assert all(math.isclose(g, w, rel_tol=1e-5, abs_tol=1e-6) for g, w in zip(got, want)), (got, want)
    capped = [len(i) == r.max_length for i, r in zip(ids, rows)]
    assert 0 < sum(capped) < len(rows) and capped[-1]
    assert plain.run(RowBatch.from_rows(rows)).scores is None


def test_earlier_captures_still_decode_after_a_larger_decoder_grows_the_step_table(loaded, monkeypatch):
    """model.choose caches one step-hash table per vocabulary and device and replaces it with a
    larger one when a later decoder needs more steps. Graphs captured earlier read the old
    table's address: it must stay alive for them (ReplayingGraphs raises when a replay would
    read freed memory, or memory other than its capture's), and they give the same names."""
    from model import choose

    monkeypatch.setattr(choose, "_STEP_HASHES", {})  # this test's own cache: it must see the table grow
    _, vocab = loaded
    rows = [r for r in mixed_rows(vocab, n=60, seed=3) if r.max_length <= 16 and r.temperature > 0]
    small = chunked(loaded, True, buckets=(64,), max_steps=16, chunk=4)
    small.warm_up()
    want = small.decode(rows)
    assert want == reference(loaded, rows) and len(rows) > 20
    (first_table,) = choose._STEP_HASHES.values()
    large = chunked(loaded, True, buckets=(8,), max_steps=first_table.shape[0] + 8, chunk=4)
    large.warm_up()
    (grown,) = choose._STEP_HASHES.values()
    assert grown.shape[0] > first_table.shape[0]  # replaced, not grown in place
    del first_table  # only the captures may still hold it
    assert small.decode(rows) == want and small.eager_chunks == 0
    assert large.decode(rows) == want


def test_every_model_variant_decodes_exactly_as_decode(variant_artifacts):
    """2-layer RNN and GRU steps too (their hidden state has more than one layer), and an
    ensemble's (its members' states side by side); eagerly and by the captured protocol."""
    model, vocab, _ = load_checkpoint(variant_artifacts.checkpoint)
    rows = mixed_rows(vocab, n=40, seed=9)
    want = reference((model, vocab), rows)
    for captured in (False, True):
        assert chunked((model, vocab), captured, buckets=(8, 64), chunk=3).decode(rows) == want, captured
