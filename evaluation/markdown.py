"""report.md from the numbers of evaluation.report.build_report."""

from __future__ import annotations

from core.vocab import BOUNDARY
from tools.tables import table

FIGURES = {"lengths": "lengths.png", "first_letters": "first_letters.png", "loss": "loss_curves.png"}


def _nll_row(label: str, r: dict) -> list:
    return [label, f"{r['nats_per_symbol']:.4f}", f"{r['bits_per_symbol']:.4f}", f"{r['bits_per_char']:.4f}",
            f"{r['bits_per_name']:.2f}"]


def _per_person_note(lik: dict) -> list[str]:
    if "val_per_person" not in lik["model"]:
        return []
    mp = lik["model"]["val_per_person"]
    return [(f"Per person: each validation name weighted by its corpus count ({mp['people']:,} people carry "
             f"the {mp['names']:,} validation names), so a name counts as often as it is met; per name (the "
             "rows above), every spelling counts once. A model that is good per name but poor per person "
             "spreads its probability over rare spellings: its most probable names (n-best) read unlike "
             "the names people have."), ""]


def render(rep: dict, *, generated: str, command: str) -> str:
    """report.md: a title, when and by what command, then `render_body`."""
    return "\n".join(["# Model-quality report", "", f"Generated {generated} by `{command}`.", "", render_body(rep)])


def render_body(rep: dict, figure_dir: str = "") -> str:
    """The report without its title and stamp; figures linked as `figure_dir/name` (the result
    page of docs/results/ keeps its figures in a folder of its own)."""
    fig = {k: f"{figure_dir}/{v}" if figure_dir else v for k, v in FIGURES.items()}
    m, c, t, s = rep["model"], rep["corpus"], rep["training"], rep["samples"]
    lik, nov = rep["likelihood"], s["novelty"]
    mv, bv = lik["model"]["val"], lik["bigram"]["val"]
    gain = bv["nats_per_symbol"] - mv["nats_per_symbol"]
    title_case = ", title-cased" if c["title_case"] else ""
    out = [
        (f"- Checkpoint: `{rep['checkpoint']}` (fingerprint `{rep['fingerprint']}`): {m['cell'].upper()}, "
        f"hidden {m['hidden_size']}, {m['num_layers']} layer(s), {m['parameters']:,} parameters."),
        (f"- Corpus: `{c['path']}`{title_case}: {c['names']:,} distinct names, split by name hash (the "
         f"commonest names of a counted corpus always train) into "
        f"{c['train_names']:,} training and {c['val_names']:,} validation names (val_fraction "
        f"{c['val_fraction']}, the split the checkpoint was trained on); count weighting in training: "
        f"{c['count_weighting']}."),
        (f"- Training: best epoch {t['best_epoch']} of {t['epochs_run']}, {_secs(t['seconds'])}, "
        f"stopped by {t['stopped_by']}."),
        "",
        "## Likelihood",
        "",
        (f"**Validation NLL: {mv['nats_per_symbol']:.4f} nats/symbol ({mv['bits_per_char']:.3f} bits/character); "
        f"bigram baseline {bv['nats_per_symbol']:.4f} nats/symbol ({bv['bits_per_char']:.3f} bits/character); "
        f"the model is {gain:.4f} nats/symbol {'below' if gain >= 0 else 'ABOVE'} the bigram.**"),
        "",
        table(["model, split", "nats/symbol", "bits/symbol", "bits/character", "bits/name"], [
            _nll_row("CharRNN, validation", mv), _nll_row("bigram, validation", bv),
            _nll_row("CharRNN, training", lik["model"]["train"]),
            _nll_row("bigram, training", lik["bigram"]["train"]),
            *[_nll_row(f"{label}, validation per person", lik[key]["val_per_person"])
              for key, label in (("model", "CharRNN"), ("bigram", "bigram")) if "val_per_person" in lik[key]]]),
        "",
        *_per_person_note(lik),
        (f"A symbol is a character or the end token (`{BOUNDARY}`), so nats/symbol is the training loss "
        f"(mean over {mv['symbols']:,} validation symbols in {mv['names']:,} names, each distinct name "
        "once). bits/character is a name's whole cost, end token included, divided by its characters."),
        "",
        (f"Bigram baseline: P(next | previous) over the same symbols, `{BOUNDARY}` as begin and end, "
        f"add-α smoothed, fitted on the training split (each distinct name once); α = {rep['bigram']['alpha']} "
        f"chosen from {rep['bigram']['alpha_grid']} by validation NLL (this flatters the baseline)."),
        "",
        f"## Samples: {s['num']:,} names at temperature {s['temperature']:g}, seed {s['seed']}",
        "",
        table(["kind", "samples", "share", "distinct names"], [
            ["copies of training names", nov["train"], f"{nov['train_share']:.1%}", nov["train_distinct"]],
            ["copies of validation names", nov["val"], f"{nov['val_share']:.1%}", nov["val_distinct"]],
            ["new names", nov["new"], f"{nov['new_share']:.1%}", nov["new_distinct"]],
            ["all", nov["samples"], "100.0%", nov["distinct"]]]),
        "",
        (f"Sampled with `core.request.make_rows` + `model.decode.decode`; {s['at_length_cap']} sample(s) "
        f"reached the {s['max_length']}-character cap."),
        "",
        f"The {len(nov['top_new'])} most frequent new names (ties in the order first sampled):",
        "",
        table(["new name", "times sampled"], nov["top_new"]) if nov["top_new"] else "(none)",
        "",
        "## Distributions",
        "",
        (f"Corpus: every distinct name{', weighted as in training' if c['count_weighting'] != 'none' else ''}. "
        f"Total variation distance between samples and corpus: length {s['length_tv']:.3f}, "
        f"first letter {s['first_letter_tv']:.3f}."),
        "",
        f"![length distribution]({fig['lengths']})",
        "",
        f"![first-letter distribution]({fig['first_letters']})",
        "",
        "## Loss curves",
        "",
        f"![training and validation loss]({fig['loss']})" if rep["history"] else
        "(the checkpoint holds no training history)",
        "",
        "## Greedy names by first letter",
        "",
        table(["first letter", "greedy name", "in the corpus"],
              [[letter, name, "new" if kind == "new" else f"yes ({kind})"] for letter, name, kind in rep["greedy"]]),
        "",
    ]
    return "\n".join(out)


def _secs(value) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "? s"
