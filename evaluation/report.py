"""Numbers of the model-quality report: likelihood against a bigram baseline, samples, greedy names.

The validation split is recomputed from the corpus and val_fraction that the checkpoint was
trained with (its train_args), by the same name hash as training (data.corpus.split), and is
checked against the split sizes the checkpoint recorded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.request import DEFAULT_MAX_LENGTH, make_rows
from core.vocab import Vocab, VocabError
from data.corpus import Entry, read_corpus, split
from evaluation.bigram import ALPHA_GRID, Bigram, choose_alpha, transitions
from evaluation.describe import member_weightings, model_info, teacher_of
from model.charrnn import CharRNN
from model.checkpoint import load_checkpoint
from model.decode import decode
from model.ensemble import CharRNNEnsemble
from model.train import IGNORE, encode_names, evaluate, sampling_weights

LN2 = math.log(2)


class EvalError(ValueError):
    """The checkpoint and corpus cannot be evaluated together; the message says why."""


@dataclass
class Inputs:
    checkpoint: Path
    model: CharRNN | CharRNNEnsemble  # an ensemble's checkpoint loads as one model (model.ensemble)
    vocab: Vocab
    ckpt: dict
    corpus: Path
    title_case: bool
    val_fraction: float
    count_weighting: str
    entries: list[Entry]
    train: list[Entry] = field(default_factory=list)
    val: list[Entry] = field(default_factory=list)


def load_inputs(checkpoint: str | Path, corpus: str | Path | None = None, title_case: bool | None = None,
                val_fraction: float | None = None) -> Inputs:
    """The checkpoint and its corpus split; arguments given here override its train_args."""
    model, vocab, ckpt = load_checkpoint(checkpoint)
    args = ckpt.get("train_args") or {}
    corpus = corpus if corpus is not None else args.get("corpus")
    if corpus is None:
        raise EvalError(f"{checkpoint}: the checkpoint does not name its corpus (no train_args); pass --corpus")
    title_case = bool(args.get("title_case", False)) if title_case is None else title_case
    val_fraction = float(args.get("val_fraction", 0.1)) if val_fraction is None else val_fraction
    entries = read_corpus(corpus, title_case=title_case)
    train, val = split(entries, val_fraction)
    metrics = ckpt.get("metrics") or {}
    recorded = (metrics.get("train_names"), metrics.get("val_names"))
    if None not in recorded and recorded != (len(train), len(val)):
        raise EvalError(f"{corpus} split with val_fraction {val_fraction} gives {len(train)} training and "
                        f"{len(val)} validation names, but {checkpoint} was trained on {recorded[0]} and "
                        f"{recorded[1]}: not the corpus or settings it was trained with")
    try:
        for e in entries:
            vocab.encode(e.name)
    except VocabError as exc:
        raise EvalError(f"{corpus}: {exc} of {checkpoint}: not the corpus it was trained on?") from None
    if not val:
        raise EvalError(f"{corpus}: the split with val_fraction {val_fraction} has no validation names")
    # an ensemble's members may each weigh the counts their own way: the first member's stands for
    # the corpus distributions the samples are compared with (the report says so)
    weighting = (member_weightings(ckpt) or [str(args.get("count_weighting", "none"))])[0]
    return Inputs(Path(checkpoint), model, vocab, ckpt, Path(corpus), title_case, val_fraction, weighting,
                  entries, train, val)


def nll_figures(total_nats: float, symbols: int, names: int) -> dict:
    """Per symbol (characters + end token), per character (the whole cost over the characters
    only) and per name."""
    chars = symbols - names
    return {"nats_per_symbol": total_nats / symbols, "bits_per_symbol": total_nats / symbols / LN2,
            "bits_per_char": total_nats / LN2 / chars, "bits_per_name": total_nats / LN2 / names,
            "symbols": symbols, "names": names}


def model_nll(model: CharRNN, vocab: Vocab, names: Sequence[str]) -> dict:
    data = encode_names(list(names), vocab)
    symbols = int(data.lengths.sum())
    return nll_figures(evaluate(model, data, torch.device("cpu")) * symbols, symbols, len(names))


def bigram_nll(bigram: Bigram, vocab: Vocab, names: Sequence[str]) -> dict:
    total, symbols = bigram.nll(names, vocab)
    return nll_figures(total, symbols, len(names))


@torch.no_grad()
def model_nats_per_name(model: CharRNN, vocab: Vocab, names: Sequence[str], batch_size: int = 1024) -> list[float]:
    """Each name's whole NLL in nats (its characters and the end token)."""
    data = encode_names(list(names), vocab)
    model.eval()
    out: list[float] = []
    for start in range(0, len(names), batch_size):
        index = torch.arange(start, min(start + batch_size, len(names)))
        width = int(data.lengths[index].max())
        logits, _ = model(data.inputs[index, :width])
        targets = data.targets[index, :width]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE,
                                                 reduction="none")
        out += loss.double().sum(dim=1).tolist()
    return out


def bigram_nats_per_name(bigram: Bigram, vocab: Vocab, names: Sequence[str]) -> list[float]:
    logp = bigram.log_probs()
    return [-float(sum(logp[a, b] for a, b in transitions(name, vocab))) for name in names]


def person_nll(nats: Sequence[float], names: Sequence[str], counts: Sequence[int]) -> dict:
    """NLL per person: each name weighted by how many people carry it (the corpus count), so a
    common name counts as often as it is met; the per-name figures weigh every spelling once."""
    weight = [float(c) for c in counts]
    total = sum(w * n for w, n in zip(weight, nats))
    symbols = sum(w * (len(name) + 1) for w, name in zip(weight, names))
    out = nll_figures(total, symbols, sum(weight))
    out["symbols"], out["names"], out["people"] = sum(len(n) + 1 for n in names), len(names), int(sum(weight))
    return out


def generate(model: CharRNN, vocab: Vocab, rows) -> list[str]:
    ids = decode(model.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                 hidden_shape=(model.num_layers, model.hidden_size))
    return [vocab.decode(i) for i in ids]


def sample_names(model: CharRNN, vocab: Vocab, num: int, seed: int, temperature: float = 1.0,
                 max_length: int = DEFAULT_MAX_LENGTH) -> list[str]:
    return generate(model, vocab, make_rows(vocab, "", num=num, temperature=temperature, seed=seed,
                                            max_length=max_length))


def greedy_by_letter(model: CharRNN, vocab: Vocab, letters: Sequence[str]) -> dict[str, str]:
    rows = [row for letter in letters for row in make_rows(vocab, letter, num=1, temperature=0.0, seed=0)]
    return dict(zip(letters, generate(model, vocab, rows)))


def novelty(samples: Sequence[str], train_names: Iterable[str], val_names: Iterable[str], top: int = 20) -> dict:
    """How many samples copy a training name, a validation name, or are new; counted per sample
    (with repeats) and per distinct name; the `top` most frequent new names."""
    train_set, val_set = set(train_names), set(val_names)
    counts = Counter(samples)
    kinds = {"train": lambda s: s in train_set, "val": lambda s: s in val_set,
             "new": lambda s: s not in train_set and s not in val_set}
    out: dict = {"samples": len(samples), "distinct": len(counts)}
    for kind, test in kinds.items():
        out[kind] = sum(c for s, c in counts.items() if test(s))
        out[f"{kind}_distinct"] = sum(1 for s in counts if test(s))
        out[f"{kind}_share"] = out[kind] / len(samples) if samples else math.nan
    # most frequent first; ties in the order they were first sampled (a random order, unlike A-Z)
    new = sorted(((s, c) for s, c in counts.items() if kinds["new"](s)), key=lambda sc: -sc[1])
    out["top_new"] = [[s, c] for s, c in new[:top]]
    return out


def shares(keys: Sequence, weights: Sequence[float] | None = None) -> dict:
    """Share of each key, optionally weighted; keys sorted."""
    weights = [1.0] * len(keys) if weights is None else list(weights)
    total: dict = {}
    for k, w in zip(keys, weights):
        total[k] = total.get(k, 0.0) + float(w)
    norm = sum(total.values())
    return {k: total[k] / norm for k in sorted(total)}


def total_variation(p: dict, q: dict) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def fit_bigram(inputs: Inputs) -> tuple[Bigram, dict]:
    """The bigram baseline fitted on the training split, α chosen by validation NLL; and the
    report's record of that choice."""
    train_names, val_names = [e.name for e in inputs.train], [e.name for e in inputs.val]
    alpha, alpha_scores = choose_alpha(train_names, val_names, inputs.vocab)
    return Bigram.fit(train_names, inputs.vocab, alpha), {
        "alpha": alpha, "alpha_grid": list(ALPHA_GRID),
        "val_nats_per_symbol_by_alpha": {str(a): s for a, s in alpha_scores.items()}}


def model_val_nll(model: CharRNN | CharRNNEnsemble, vocab: Vocab, val: Sequence[Entry]) -> dict:
    """A model's NLL on the validation entries `val`, per name ("val") and per person
    ("val_per_person"): the report's, the card's and the comparison's (evaluation.compare) one
    definition."""
    val_names, counts = [e.name for e in val], [e.count for e in val]
    nats = model_nats_per_name(model, vocab, val_names)  # one pass gives both figures
    symbols = sum(len(n) + 1 for n in val_names)
    return {"val": nll_figures(math.fsum(nats), symbols, len(val_names)),
            "val_per_person": person_nll(nats, val_names, counts)}


def validation_likelihood(inputs: Inputs, bigram: Bigram) -> dict:
    """Validation NLL of the model and the bigram, per name ("val") and per person
    ("val_per_person"): what the report and the model card (evaluation.card) both state."""
    vocab = inputs.vocab
    val_names, counts = [e.name for e in inputs.val], [e.count for e in inputs.val]
    return {
        "model": model_val_nll(inputs.model, vocab, inputs.val),
        "bigram": {"val": bigram_nll(bigram, vocab, val_names),
                   "val_per_person": person_nll(bigram_nats_per_name(bigram, vocab, val_names), val_names,
                                                counts)},
    }


def build_report(inputs: Inputs, num_samples: int = 1000, seed: int = 0, temperature: float = 1.0) -> dict:
    """Every number of the report (JSON-ready)."""
    model, vocab = inputs.model, inputs.vocab
    train_names, val_names = [e.name for e in inputs.train], [e.name for e in inputs.val]
    bigram, bigram_info = fit_bigram(inputs)
    likelihood = validation_likelihood(inputs, bigram)
    likelihood["model"]["train"] = model_nll(model, vocab, train_names)
    likelihood["bigram"]["train"] = bigram_nll(bigram, vocab, train_names)

    samples = sample_names(model, vocab, num_samples, seed, temperature)
    names = [e.name for e in inputs.entries]
    weighting = sampling_weights(inputs.entries, inputs.count_weighting)
    weights = None if weighting is None else weighting.tolist()
    lengths = {"samples": shares([len(s) for s in samples]), "corpus": shares([len(n) for n in names], weights)}
    firsts = {"samples": shares([s[0] for s in samples]), "corpus": shares([n[0] for n in names], weights)}
    letters = sorted({n[0] for n in names})
    train_set, val_set = set(train_names), set(val_names)

    ckpt = inputs.ckpt
    return {
        "checkpoint": str(inputs.checkpoint),
        "fingerprint": ckpt.get("fingerprint"),
        "model": model_info(model, ckpt),
        "training": training_record(ckpt),
        "train_args": ckpt.get("train_args") or {},
        "corpus": {"path": str(inputs.corpus), "title_case": inputs.title_case, "names": len(names),
                   "train_names": len(train_names), "val_names": len(val_names),
                   "val_fraction": inputs.val_fraction, "count_weighting": inputs.count_weighting,
                   "member_weightings": member_weightings(ckpt)},
        "likelihood": likelihood,
        "bigram": bigram_info,
        "samples": {"num": num_samples, "seed": seed, "temperature": temperature,
                    "max_length": DEFAULT_MAX_LENGTH,
                    "at_length_cap": sum(len(s) >= DEFAULT_MAX_LENGTH for s in samples),
                    "novelty": novelty(samples, train_names, val_names),
                    "length_tv": total_variation(lengths["samples"], lengths["corpus"]),
                    "first_letter_tv": total_variation(firsts["samples"], firsts["corpus"])},
        "distributions": {"length": lengths, "first_letter": firsts},
        "greedy": [[letter, name, _kind(name, train_set, val_set)]
                   for letter, name in greedy_by_letter(model, vocab, letters).items()],
        "history": ckpt.get("history") or [],
        "_samples": samples,
    }


def training_record(ckpt: dict) -> dict:
    """What the training run recorded: a single model's best epoch, epochs, seconds, stop reason
    and validation loss; for an ensemble (model.members) its own validation loss, its members'
    (each: seed, count weighting, best epoch of epochs run, validation loss) and the best of
    theirs; for a distilled student, its teacher's path."""
    metrics = ckpt.get("metrics") or {}
    out = {k: metrics.get(k) for k in ("best_epoch", "epochs_run", "seconds", "stopped_by", "best_val_loss")}
    if metrics.get("members"):
        out["members"] = [{k: m.get(k) for k in ("seed", "count_weighting", "best_epoch", "epochs_run",
                                                  "best_val_loss", "seconds", "stopped_by")}
                          for m in metrics["members"]]
        out["best_member_val_loss"] = metrics.get("best_member_val_loss")
    out["teacher"] = teacher_of(ckpt)
    return out


def _kind(name: str, train_set: set[str], val_set: set[str]) -> str:
    return "training" if name in train_set else "validation" if name in val_set else "new"
