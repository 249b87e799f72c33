"""The model card (evaluation.card, model_card.md): Hugging Face's front matter and sections,
figures that are the evaluation's and the checkpoint's, the corpus's provenance quoted from its one
home, the same card from `make card` and `make eval`, never a half-written one, and never a card of
another model shipped with these weights."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from core import contract
from core.errors import ArtifactError
from core.model_card import check_card, front_matter, split_front_matter
from data.corpus import Entry, read_corpus
from evaluation.__main__ import main as eval_main
from evaluation.card import common_starts
from evaluation.card import main as card_main
from evaluation.card_markdown import corpus_provenance
from model.checkpoint import load_checkpoint, save_checkpoint
from model.generate import TorchGenerator
from tests.conftest import NAMES

README = """# Test names

Where they come from: a test, licence ODC-PDDL-1.0 (public domain).

## Format

One name per line, with its count.

## Known limits

- Counted in 2010 only.
- Small counts suppressed.
"""
SECTIONS = ["Model details", "Uses", "Bias, risks, and limitations", "Training details", "Evaluation",
            "Most likely names", "How to use", "Licence and citation"]


@pytest.fixture(scope="module")
def project(tiny_artifacts, tmp_path_factory):
    """A repository-like folder whose data/test/ holds the tiny model's corpus (with counts) and its
    README.md, and a copy of the tiny checkpoint that names that corpus in its train_args."""
    root = tmp_path_factory.mktemp("project")
    data = root / "data" / "test"
    data.mkdir(parents=True)
    corpus = data / "names.tsv"
    counts = {n: 1 + (7 * i) % 13 for i, n in enumerate(NAMES)}  # people per name, for the per-person figures
    corpus.write_text("name\tcount\n" + "".join(f"{n}\t{c}\n" for n, c in counts.items()), encoding="utf-8")
    (data / "README.md").write_text(README, encoding="utf-8")
    model, vocab, ckpt = load_checkpoint(tiny_artifacts.checkpoint)
    art = root / "art"
    checkpoint = art / contract.CHECKPOINT
    args = {"corpus": str(corpus), "val_fraction": 0.15, "title_case": False, "count_weighting": "sqrt",
            "hidden_size": model.hidden_size, "cell": model.config.cell, "seed": 0}
    save_checkpoint(checkpoint, model, vocab, metrics=ckpt["metrics"], history=ckpt["history"], train_args=args)
    return root, checkpoint, corpus, ckpt


def sections(text: str) -> list[str]:
    _, body = split_front_matter(text)
    return re.findall(r"^## (.+)$", body, re.MULTILINE)


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else len(text)]


def test_the_card_follows_the_model_card_conventions(project, monkeypatch, tmp_path):
    root, checkpoint, _, ckpt = project
    monkeypatch.setattr("evaluation.card_markdown.DATA_DIR", root / "data")
    card = tmp_path / contract.MODEL_CARD
    card_main(["--checkpoint", str(checkpoint), "--out", str(card)])
    text = card.read_text(encoding="utf-8")
    meta = front_matter(text)
    assert meta["language"] == ["pt"] and meta["license"] == "mit" and meta["datasets"] == ["data/test/names.tsv"]
    assert {"character-level", "name-generation", "rnn"} <= set(meta["tags"]) and meta["metrics"] == ["perplexity"]
    assert meta["fingerprint"] == ckpt["fingerprint"]
    assert meta["model-index"][0]["results"][0]["dataset"]["split"] == "validation"
    assert sections(text) == SECTIONS
    # the corpus's provenance is quoted from its README.md, its limits under the limitations
    assert "`data/test/README.md`" in text
    assert "licence ODC-PDDL-1.0 (public domain)" in section(text, "Training details")
    assert "#### Test names" in section(text, "Training details") and "##### Format" in section(text, "Training details")
    limits = section(text, "Bias, risks, and limitations")
    assert "### Known limits" in limits and "- Counted in 2010 only." in limits
    assert "No gender or region modelled" in limits and "square root of their count" in limits
    assert "Counted in 2010" not in section(text, "Training details")
    # the training configuration is the checkpoint's, every option of it
    procedure = section(text, "Training details")
    for key, value in load_checkpoint(checkpoint)[2]["train_args"].items():
        assert f"| `{key}` | `{value}` |" in procedure
    assert f"| best epoch | {ckpt['metrics']['best_epoch']} |" in procedure
    # the vocabulary's characters, the files of the contract
    _, vocab, _ = load_checkpoint(checkpoint)
    assert f"`{''.join(vocab.characters)}`" in text and f"`{contract.ONNX_GENERATE}`" in text
    assert "make card" in text and re.search(r"\d{4}-\d\d-\d\d", text) is None  # no date: same bytes each time


def test_the_cards_figures_are_the_evaluations_and_the_n_best_searchs(project, monkeypatch, tmp_path):
    """`make eval` (python -m evaluation --card) and `make card` (python -m evaluation.card) write the
    same bytes, and every figure is the report's, the checkpoint's or the search's."""
    root, checkpoint, corpus, ckpt = project
    monkeypatch.setattr("evaluation.card_markdown.DATA_DIR", root / "data")
    by_eval, alone = tmp_path / "eval" / contract.MODEL_CARD, tmp_path / "card" / contract.MODEL_CARD
    eval_main(["--checkpoint", str(checkpoint), "--out-dir", str(tmp_path / "report"), "--samples", "20",
               "--card", str(by_eval)])
    card_main(["--checkpoint", str(checkpoint), "--out", str(alone)])
    text = alone.read_text(encoding="utf-8")
    assert by_eval.read_text(encoding="utf-8") == text
    lik = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))["likelihood"]
    mv, mp = lik["model"]["val"], lik["model"]["val_per_person"]
    bv, bp = lik["bigram"]["val"], lik["bigram"]["val_per_person"]
    assert mp["nats_per_symbol"] != pytest.approx(mv["nats_per_symbol"])  # the counts make them differ
    values = {m["name"]: m["value"] for m in front_matter(text)["model-index"][0]["results"][0]["metrics"]}
    assert values == {"validation NLL per name (nats/symbol)": round(mv["nats_per_symbol"], 4),
                      "validation NLL per person (nats/symbol)": round(mp["nats_per_symbol"], 4),
                      "validation perplexity per symbol, per name": round(math.exp(mv["nats_per_symbol"]), 4)}
    # the validation NLL training measured on the same split
    assert values["validation NLL per name (nats/symbol)"] == pytest.approx(ckpt["metrics"]["best_val_loss"], abs=5e-5)
    evaluation = section(text, "Evaluation")
    for label, per_name, per_person in (("CharRNN (this model)", mv, mp), ("character bigram (baseline)", bv, bp)):
        assert (f"| {label} | {per_name['nats_per_symbol']:.4f} | {per_name['bits_per_char']:.3f} | "
                f"{per_person['nats_per_symbol']:.4f} | {per_person['bits_per_char']:.3f} |") in evaluation
    assert f"{bv['nats_per_symbol'] - mv['nats_per_symbol']:.4f} nats/symbol below the bigram per name" in evaluation
    assert f"({mp['people']:,} people carry the {mp['names']:,} validation names)" in evaluation
    # the most likely names: the exact n-best of the empty prefix and of the corpus's commonest starts
    gen = TorchGenerator.from_checkpoint(checkpoint)
    starts = common_starts(read_corpus(corpus))
    shown = nbest_tables(section(text, "Most likely names"))
    assert list(shown) == ["", *starts] and len(starts) == 3
    for prefix, rows in shown.items():
        found = gen.nbest(prefix, num=10 if prefix == "" else 5)
        assert [(name, logp) for name, _, logp in rows] == [
            (gen.vocab.decode(ids), f"{lp:.4f}") for ids, lp in zip(found.ids, found.logprobs)], prefix
        assert [float(p.rstrip("%")) for _, p, _ in rows] == pytest.approx(
            [100 * math.exp(lp) for lp in found.logprobs], rel=5e-3), prefix


def nbest_tables(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """Prefix -> (name, probability, log-probability) rows of each table of "Most likely names"."""
    out = {}
    for chunk in text.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        prefix = re.search(r"“(.*)”", heading).group(1) if "“" in heading else ""
        out[prefix] = [tuple(c.strip() for c in line.strip("|").split("|")[1:4])
                       for line in body.splitlines() if re.match(r"^\| \d+ \|", line)]
    return out


def test_common_starts_weigh_each_name_by_its_people():
    entries = [Entry("Maria", 10), Entry("Mara", 1), Entry("José", 6), Entry("João", 5), Entry("Ana", 12),
               Entry("Jo", 100), Entry("Bia", 3)]  # a name no longer than the start is not one of its names
    assert common_starts(entries, num=3) == ["An", "Jo", "Ma"]  # 12 people, then 11 and 11 (ties A-Z)
    assert common_starts(entries, num=1, length=1) == ["J"]


def test_a_users_own_corpus_is_named_as_theirs(tiny_artifacts, tiny_card, tiny_corpus):
    """A corpus outside the project's data/ (here the tests' tiny corpus): no provenance to quote,
    no language claimed; the card names the file and says its source is unknown."""
    assert corpus_provenance(tiny_corpus) is None
    text = tiny_card.read_text(encoding="utf-8")
    meta = front_matter(text)
    assert "language" not in meta and meta["datasets"] == [str(tiny_corpus)]
    assert f"The user's own corpus `{tiny_corpus}`" in section(text, "Training details")
    assert "source, licence or limits" in text
    assert "per person: the corpus has no counts, so per person equals per name" in text


def test_make_eval_rewrites_the_card_only_when_its_text_changed(project, monkeypatch, tmp_path):
    """An unchanged card keeps its time, so `make` does not rebuild the archives that carry it."""
    root, checkpoint, _, _ = project
    monkeypatch.setattr("evaluation.card_markdown.DATA_DIR", root / "data")
    card = tmp_path / contract.MODEL_CARD
    args = ["--checkpoint", str(checkpoint), "--out-dir", str(tmp_path / "report"), "--samples", "5", "--card", str(card)]
    eval_main(args)
    os.utime(card, (1_000_000_000, 1_000_000_000))
    eval_main(args)
    assert card.stat().st_mtime == 1_000_000_000
    card.write_text(card.read_text(encoding="utf-8").replace("## Uses", "## Edited by hand"), encoding="utf-8")
    eval_main(args)
    assert "## Uses" in card.read_text(encoding="utf-8") and card.stat().st_mtime > 1_000_000_000


def test_a_failed_evaluation_never_leaves_a_half_written_card(project, monkeypatch, tmp_path):
    root, checkpoint, _, _ = project
    monkeypatch.setattr("evaluation.card_markdown.DATA_DIR", root / "data")
    card = tmp_path / contract.MODEL_CARD
    card_main(["--checkpoint", str(checkpoint), "--out", str(card)])
    good = card.read_bytes()
    # a corpus that is not the one trained on: refused before anything is written
    other = tmp_path / "other.txt"
    other.write_text("Ana\nBia\n", encoding="utf-8")
    for run in (lambda: card_main(["--checkpoint", str(checkpoint), "--out", str(card), "--corpus", str(other)]),
                lambda: eval_main(["--checkpoint", str(checkpoint), "--out-dir", str(tmp_path / "r"),
                                   "--corpus", str(other), "--card", str(card)])):
        with pytest.raises(SystemExit, match="not the corpus or settings it was trained with"):
            run()
        assert card.read_bytes() == good
    # the text fails half-way (rendered before anything is written) or the write itself fails
    monkeypatch.setattr("evaluation.card.most_likely", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        card_main(["--checkpoint", str(checkpoint), "--out", str(card)])
    monkeypatch.undo()
    monkeypatch.setattr("evaluation.card_markdown.DATA_DIR", root / "data")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("core.atomic.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        card_main(["--checkpoint", str(checkpoint), "--out", str(card)])
    assert card.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_a_card_of_another_model_is_never_shipped(tiny_artifacts, tiny_card, tmp_path):
    from serve.archive import build_archives

    fingerprint = front_matter(tiny_card.read_text(encoding="utf-8"))["fingerprint"]
    check_card(tiny_card, fingerprint)
    other = tmp_path / "other.md"
    other.write_text(tiny_card.read_text(encoding="utf-8").replace(fingerprint, "0123456789abcdef"), encoding="utf-8")
    plain = tmp_path / "plain.md"
    plain.write_text("# A card without front matter\n", encoding="utf-8")
    for card, needle in ((other, r"describes another model \(fingerprint 0123456789abcdef"),
                         (plain, "not a model card: it does not open with YAML front matter"),
                         (tmp_path / "missing.md", "no model card")):
        with pytest.raises(ArtifactError, match=needle):
            check_card(card, fingerprint)
        with pytest.raises(SystemExit, match=needle):
            build_archives(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, tmp_path / "store",
                           greedy_graph=tiny_artifacts.dir / contract.ONNX_GENERATE, card=card)
        assert not list((tmp_path / "store").glob("*.mar")) if (tmp_path / "store").exists() else True


def make_dry_run(*args: str) -> list[str]:
    import subprocess

    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", *args], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.replace("\\\n", " ").splitlines()


def test_make_builds_the_card_for_what_ships_it_and_make_eval_rewrites_it(tmp_path):
    """Plain `make` writes the card (the archives carry it) and nothing under docs/; `make eval`
    rewrites it beside its report and result page; `make web` ships it."""
    art = tmp_path / "art"
    card = f"{art}/{contract.MODEL_CARD}"
    plain = make_dry_run(f"ART={art}")
    writes = [i for i, line in enumerate(plain) if f"-m evaluation.card --checkpoint {art}/{contract.CHECKPOINT} "
              f"--out {card}" in line]
    archive = [i for i, line in enumerate(plain) if "-m serve.archive" in line]
    assert writes and archive and writes[0] < archive[0] and f"--card {card}" in plain[archive[0]]
    assert not [line for line in plain if "docs/" in line or "--page" in line]
    evaluation = [line for line in make_dry_run("eval", f"ART={art}") if "-m evaluation " in line]
    assert len(evaluation) == 1 and f"--card {card}" in evaluation[0] and "--page docs/results/" in evaluation[0]
    web = [line for line in make_dry_run("web", f"ART={art}") if "-m web.build" in line]
    assert len(web) == 1 and f"--card {card}" in web[0]


def test_the_default_corpus_built_from_the_census_quotes_the_census_readme(tmp_path):
    """`make data` builds artifacts/corpus.txt from data/census/ and leaves a note beside it, so the
    default model's card quotes the census README (provenance, licence, limits) rather than calling
    the built file a user's own corpus; a copy of the corpus without the note is a user's own."""
    from data.build_default import main as build_default
    from data.sources import CENSUS_NAMES

    built = tmp_path / "corpus.txt"
    build_default(["--out", str(built)])
    provenance = corpus_provenance(built)
    assert provenance is not None
    assert provenance.source == CENSUS_NAMES.relative_to(CENSUS_NAMES.parents[2])
    assert provenance.text == (CENSUS_NAMES.parent / "README.md").read_text(encoding="utf-8")
    copy = tmp_path / "mine" / "corpus.txt"
    copy.parent.mkdir()
    copy.write_bytes(built.read_bytes())
    assert corpus_provenance(copy) is None
