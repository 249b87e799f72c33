"""The torch decoding loop: prefixes, the stop rule, sampling (batch independence and parity with
the other backends: tests/test_sampling_parity.py)."""

import subprocess
import sys

import pytest
import torch

from core.noise import mix32, seeded_bits, seeded_bits32, to_unit_interval, uniform_bits
from core.request import Row, make_rows
from core.vocab import VocabError
from model.choose import as_int32, gumbel_noise, seed_hashes, step_hashes
from model.decode import Chooser, Start
from tests.conftest import decode_loaded as run
from tests.conftest import reference_loaded
from tests.test_chunked import mixed_rows


def test_greedy_from_a_letter_starts_with_it_and_stops_by_itself(loaded):
    _model, vocab = loaded
    rows = [Row(vocab.encode(ch), max_length=40) for ch in "ABCDGJLMS"]
    for ids, row in zip(run(loaded, rows), rows):
        assert ids[: len(row.prefix)] == list(row.prefix)
        assert vocab.eos_id not in ids
        assert 2 <= len(ids) < 40  # ended at the end token, not at the cap


def test_the_stop_rule_is_the_first_end_token(loaded):
    """Step the model by hand: the name is exactly the argmax chain up to the first end token."""
    model, vocab = loaded
    token, hidden, manual = torch.tensor([vocab.bos_id]), model.init_hidden(1), []
    for t in range(30):
        logits, hidden = model.step(token, hidden)
        if t == 0:
            logits[0, vocab.eos_id] = float("-inf")
        token = logits.argmax(1)
        if int(token) == vocab.eos_id:
            break
        manual.append(int(token))
    assert run(loaded, [Row((), max_length=30)]) == [manual]


def test_max_length_caps_the_name_including_the_prefix(loaded):
    _, vocab = loaded
    for cap in (1, 2, 3):
        (ids,) = run(loaded, [Row(vocab.encode("M")[:cap], max_length=cap)])
        assert len(ids) <= cap
    with pytest.raises(ValueError, match="shorter than the prefix"):
        Row(vocab.encode("Mari"), max_length=3)


def test_sampling_is_reproducible_and_depends_on_the_seed(loaded):
    _, vocab = loaded
    rows = make_rows(vocab, "", num=30, temperature=1.2, seed=7)
    first = run(loaded, rows)
    assert first == run(loaded, make_rows(vocab, "", num=30, temperature=1.2, seed=7))
    assert first != run(loaded, make_rows(vocab, "", num=30, temperature=1.2, seed=8))
    assert len({tuple(ids) for ids in first}) > 5


def test_the_noise_of_several_steps_at_once_is_the_counter_based_noise_of_each_step():
    """The loop hashes on int32, from a per-vocabulary table of the (step, symbol) half, several
    steps at once on a GPU; each step's noise must still be core.noise's of (row seed, step,
    symbol), which the numpy runtime draws on int64, one step at a time."""
    seeds, vocab = torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 12345]), 7
    noise = gumbel_noise(seed_hashes(seeds), step_hashes(3, 19, vocab, torch.device("cpu")), torch.float32)
    symbols = torch.arange(vocab).unsqueeze(0)
    for step in range(3, 22):
        u = to_unit_interval(uniform_bits(seeds.unsqueeze(1), step, symbols).to(torch.float32))
        # exactly: the same elementwise torch.log on the same u (a 2-D slice of a 3-D tensor)
        assert torch.equal(noise[step - 3], torch.log(-torch.log(u))), step


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_int32_hashing_gives_the_int64_values(backend):
    """seeded_bits32 (wrapping products, masked shifts) against the int64 seeded_bits, over the
    values where a sign or carry would show: the extremes and random 32-bit words."""
    gen = torch.Generator().manual_seed(0)
    words = torch.cat([torch.tensor([0, 1, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1]),
                       torch.randint(0, 2**32, (4000,), generator=gen)])
    seed_hash, symbols, step = words.view(-1, 1), torch.arange(300).view(1, -1), 5
    want = seeded_bits(seed_hash, step, symbols)
    a, b = as_int32(seed_hash), as_int32(mix32(symbols + step * 65536 + 1))
    got = seeded_bits32(a, b) if backend == "torch" else torch.from_numpy(seeded_bits32(a.numpy(), b.numpy()))
    assert got.dtype == torch.int32 and torch.equal(got.long(), want)


def test_the_chooser_of_kept_rows_chooses_as_it_did_for_them(loaded):
    rows = mixed_rows(loaded[1], n=40, seed=2)
    logits = torch.randn(len(rows), 9, generator=torch.Generator().manual_seed(1))
    choose = Chooser.for_rows(rows, vocab=9)
    keep = torch.tensor([0, 5, 6, 17, 39])
    for step in range(3):  # ids; from the same logits, divisors and elementwise noise of the kept rows
        assert torch.equal(choose.take(keep)(logits[keep], step), choose(logits, step)[keep])


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_gives_the_plain_reference_loops_ids(loaded, seed):
    rows = mixed_rows(loaded[1], n=80, seed=seed)
    assert run(loaded, rows) == reference_loaded(loaded, rows)


def test_top_k_one_is_greedy(loaded):
    _, vocab = loaded
    greedy = run(loaded, [Row(vocab.encode(ch)) for ch in "ABC"])
    assert run(loaded, [Row(vocab.encode(ch), temperature=2.0, top_k=1, seed=9) for ch in "ABC"]) == greedy


def test_continuing_from_a_start_state_equals_decoding_the_whole_prefix(loaded):
    model, vocab = loaded
    prefix = vocab.encode("Ma")
    (whole,) = run(loaded, [Row(prefix, max_length=20)])
    with torch.inference_mode():
        hidden = model.init_hidden(1)
        for ch in [vocab.bos_id, prefix[0]]:
            _, hidden = model.step(torch.tensor([ch]), hidden)
    start = Start(token=torch.tensor([prefix[1]]), hidden=hidden, name_length=torch.tensor([2]))
    (rest,) = run(loaded, [Row((), max_length=18)], start=start)
    assert prefix + rest == whole


def test_on_step_reports_each_character_as_it_is_chosen(loaded):
    _, vocab = loaded
    seen = []
    (ids,) = run(loaded, [Row(vocab.encode("J"))], on_step=lambda t, tok, live: seen.append(int(tok[0])) if live[0] else None)
    assert seen == ids


def test_unknown_prefix_character_is_named(loaded):
    _, vocab = loaded
    with pytest.raises(VocabError, match=r"'#' \(U\+0023\)"):
        make_rows(vocab, "A#")


@pytest.mark.parametrize("backend", ["eager", "torchscript", "onnx"])
def test_generate_cli_runs_every_backend(tiny_artifacts, backend):
    path = {"eager": tiny_artifacts.checkpoint, "torchscript": tiny_artifacts.torchscript, "onnx": tiny_artifacts.onnx}[backend]
    out = subprocess.run([sys.executable, "-m", "tools.generate", "--backend", backend, "--model", str(path),
                          "--prefix", "Ma", "--prefix", "J", "-n", "2", "--temperature", "0.7", "--seed", "3"],
                         capture_output=True, text=True, check=True)
    names = out.stdout.splitlines()
    assert len(names) == 4 and names[0].startswith("Ma") and names[3].startswith("J")
    bad = subprocess.run([sys.executable, "-m", "tools.generate", "--backend", backend, "--model", str(path),
                          "--prefix", "A#"], check=False, capture_output=True, text=True)
    assert bad.returncode != 0 and "'#' (U+0023)" in bad.stderr and "Traceback" not in bad.stderr


def test_the_old_generate_command_is_an_alias_of_the_one_generate_command(tiny_artifacts):
    """`python -m model.generate` (documented before the command moved to tools/) still works:
    the same flags and defaults, the same names, the same errors."""
    def run(module, *args):
        return subprocess.run([sys.executable, "-m", module, "--model", str(tiny_artifacts.checkpoint), *args],
                              check=False, capture_output=True, text=True)

    flags = ("--prefix", "Ma", "--prefix", "J", "-n", "2", "--temperature", "0.7", "--seed", "3")
    old, new = run("model.generate", *flags), run("tools.generate", *flags)
    assert old.returncode == 0, old.stderr
    assert old.stdout == new.stdout and len(old.stdout.splitlines()) == 4
    bad = run("model.generate", "--prefix", "A#")
    assert bad.returncode != 0 and "'#' (U+0023)" in bad.stderr and "Traceback" not in bad.stderr


def test_ties_go_to_the_first_symbol_as_numpys_argmax_does():
    """The numpy twin takes argmax's first maximum; the torch loop's row_argmax must too."""
    from model.choose import row_argmax

    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0], [3.0, 3.0, 3.0, 3.0], [-1.0, -5.0, -1.0, -1.0]] * 20)
    assert row_argmax(logits).tolist() == logits.numpy().argmax(axis=1).tolist() == [1, 0, 0] * 20
