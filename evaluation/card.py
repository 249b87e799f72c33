"""The model card, model_card.md beside the other artifacts: Hugging Face's model-card conventions
(YAML front matter: language, license, tags, datasets, metrics, model-index; then their sections),
generated from the checkpoint and its evaluation, never written by hand.

Usage: python -m evaluation.card --checkpoint artifacts/checkpoint.pt [--out artifacts/model_card.md]
       (make card; `make eval` writes the same card from its report: python -m evaluation --card FILE)

What comes from where:
- the model, its training configuration and training record: the checkpoint (config, train_args,
  metrics, fingerprint);
- validation NLL per name and per person, the model's and the bigram baseline's: the evaluation's
  own functions (evaluation.report.validation_likelihood), on the split the checkpoint was trained on;
- the most likely names: the exact n-best search (model.nbest) for the empty prefix and the
  corpus's most common two-letter starts, with their probabilities;
- the corpus's provenance, licence and limits: the README.md beside the corpus when the corpus is
  one of the project's (under data/), quoted whole, so those facts have one home; any other corpus
  is named as the user's own, of unknown source and licence;
- the code's licence: pyproject.toml.

The card holds no date, so the same checkpoint and corpus give the same bytes: `make eval`
rewrites the card only when its text changed, and the archives that carry it are not rebuilt for
nothing. Written atomically (core.atomic).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from core import contract
from core.atomic import exit_on_sigterm, write_text_atomic
from data.corpus import CorpusError, Entry
from evaluation.card_markdown import render_card
from evaluation.report import EvalError, Inputs, fit_bigram, load_inputs, validation_likelihood
from model.checkpoint import CheckpointError
from model.generate import TorchGenerator

EMPTY_NUM = 10  # most likely names shown for the empty prefix
PREFIX_NUM = 5  # ... and for each common start
STARTS = 3  # how many of the corpus's most common two-letter starts
START_LENGTH = 2


def common_starts(entries: Sequence[Entry], num: int = STARTS, length: int = START_LENGTH) -> list[str]:
    """The `num` most common first `length` characters of the corpus's names, each name weighted by
    its count (people); ties in alphabetical order."""
    weight: Counter = Counter()
    for e in entries:
        if len(e.name) > length:
            weight[e.name[:length]] += e.count
    return [start for start, _ in sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[:num]]


def most_likely(inputs: Inputs, prefixes: Sequence[str]) -> list[dict]:
    """The exact n-best of each prefix: names (with log-probability and where the corpus has them),
    and whether the search proved them all within its bound."""
    model, vocab = inputs.model, inputs.vocab
    gen = TorchGenerator(model.step, vocab, (model.num_layers, model.hidden_size))
    train, val = {e.name for e in inputs.train}, {e.name for e in inputs.val}
    out = []
    for prefix in prefixes:
        found = gen.nbest(prefix, num=PREFIX_NUM if prefix else EMPTY_NUM)
        names = [vocab.decode(ids) for ids in found.ids]
        out.append({"prefix": prefix, "complete": found.complete,
                    "names": [[name, logp, "training" if name in train else "validation" if name in val else "new"]
                              for name, logp in zip(names, found.logprobs)]})
    return out


def card_numbers(inputs: Inputs, likelihood: dict | None = None, bigram: dict | None = None) -> dict:
    """Every figure of the card. `likelihood` and `bigram`: the report's (build_report), when the
    card is written with it; computed here otherwise, by the same functions."""
    if likelihood is None or bigram is None:
        fitted, bigram = fit_bigram(inputs)
        likelihood = validation_likelihood(inputs, fitted)
    return {"likelihood": likelihood, "bigram_alpha": bigram["alpha"],
            "nbest": most_likely(inputs, ["", *common_starts(inputs.entries)])}


def build_card(inputs: Inputs, report: dict | None = None) -> str:
    """The card's text; from `report`'s likelihood figures when given (python -m evaluation)."""
    numbers = card_numbers(inputs, *((report["likelihood"], report["bigram"]) if report else ()))
    return render_card(inputs, numbers)


def write_card(path: str | Path, text: str, *, if_changed: bool = False) -> bool:
    """Write the card atomically; with `if_changed`, leave an identical card (and its time) alone.
    Returns whether it wrote."""
    path = Path(path)
    if if_changed and path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)
    return True


def main(argv: list[str] | None = None) -> None:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description="Write the model card of a CharRNN checkpoint (model_card.md).")
    p.add_argument("--checkpoint", default=contract.default_path(contract.CHECKPOINT))
    p.add_argument("--out", default=None, help=f"default: {contract.MODEL_CARD} beside the checkpoint")
    p.add_argument("--corpus", default=None, help="default: the corpus in the checkpoint's train_args")
    p.add_argument("--title-case", action=argparse.BooleanOptionalAction, default=None,
                   help="default: as the checkpoint was trained")
    p.add_argument("--val-fraction", type=float, default=None, help="default: as the checkpoint was trained")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / contract.MODEL_CARD
    try:
        inputs = load_inputs(args.checkpoint, args.corpus, args.title_case, args.val_fraction)
        text = build_card(inputs)
    except (EvalError, CheckpointError, CorpusError) as exc:
        raise SystemExit(f"error: {exc}") from None
    write_card(out, text)  # always: make judges the card by its time
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
