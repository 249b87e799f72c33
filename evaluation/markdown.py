"""report.md from the numbers of evaluation.report.build_report."""

from __future__ import annotations

from core.vocab import BOUNDARY
from evaluation import compare
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
    who = model_word(m)
    out = [
        f"- Checkpoint: `{rep['checkpoint']}` (fingerprint `{rep['fingerprint']}`): {model_sentence(m)}",
        (f"- Corpus: `{c['path']}`{title_case}: {c['names']:,} distinct names, split by name hash (the "
         f"commonest names of a counted corpus always train) into "
        f"{c['train_names']:,} training and {c['val_names']:,} validation names (val_fraction "
        f"{c['val_fraction']}, the split the checkpoint was trained on); count weighting in training: "
        f"{_weighting(c)}."),
        *training_lines(t),
        "",
        "## Likelihood",
        "",
        (f"**Validation NLL: {mv['nats_per_symbol']:.4f} nats/symbol ({mv['bits_per_char']:.3f} bits/character); "
        f"bigram baseline {bv['nats_per_symbol']:.4f} nats/symbol ({bv['bits_per_char']:.3f} bits/character); "
        f"the model is {gain:.4f} nats/symbol {'below' if gain >= 0 else 'ABOVE'} the bigram.**"),
        "",
        table(["model, split", "nats/symbol", "bits/symbol", "bits/character", "bits/name"], [
            _nll_row(f"{who}, validation", mv), _nll_row("bigram, validation", bv),
            _nll_row(f"{who}, training", lik["model"]["train"]),
            _nll_row("bigram, training", lik["bigram"]["train"]),
            *[_nll_row(f"{label}, validation per person", lik[key]["val_per_person"])
              for key, label in (("model", who), ("bigram", "bigram")) if "val_per_person" in lik[key]]]),
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
        (f"Corpus: every distinct name{_weighted_as(c)}. "
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
    if rep.get("comparison"):
        out += [compare.markdown(rep["comparison"], heading="##"), ""]
    return "\n".join(out)


def model_word(m: dict) -> str:
    """What the likelihood table calls the model: CharRNN, ensemble or student."""
    return "ensemble" if m.get("members", 1) > 1 else "student" if m.get("teacher") else "CharRNN"


def model_sentence(m: dict) -> str:
    """The model in one sentence: its shape, parameters, and what an ensemble or a student is."""
    if m.get("members", 1) > 1:
        return (f"an {m['label']}, {m['parameters']:,} parameters in all: each step runs its {m['members']} members "
                f"(their states side by side, {m['hidden_size']} units) and averages their next-character "
                f"probabilities, so it costs {m['members']}× a member's step.")
    text = (f"{m['cell'].upper()}, hidden {m['hidden_size']}, {m['num_layers']} layer(s), {m['parameters']:,} "
            "parameters")
    if m.get("teacher"):
        text += f", distilled from `{m['teacher']}` (trained on its next-character distributions)"
    return text + "."


def training_lines(t: dict) -> list[str]:
    """The Training bullet: a single model's best epoch; an ensemble's members, each on its own line."""
    if not t.get("members"):
        return [(f"- Training: best epoch {t['best_epoch']} of {t['epochs_run']}, {_secs(t['seconds'])}, "
                 f"stopped by {t['stopped_by']}.")]
    lines = [(f"- Training: {len(t['members'])} members side by side (one process and one core each), "
              f"{_secs(t['seconds'])}, stopped by {t['stopped_by']}; validation loss of the ensemble "
              f"{_loss(t['best_val_loss'])}, of its best member {_loss(t['best_member_val_loss'])}:")]
    for i, mm in enumerate(t["members"]):
        lines.append(f"  - member {i} (seed {mm['seed']}, count weighting {mm['count_weighting']}): best epoch "
                     f"{mm['best_epoch']} of {mm['epochs_run']}, validation loss {_loss(mm['best_val_loss'])}.")
    return lines


def _weighting(c: dict) -> str:
    members = c.get("member_weightings") or []
    if not members:
        return c["count_weighting"]
    if len(set(members)) == 1:
        return f"{members[0]} (every member)"
    return "the members': " + ", ".join(f"{w} (member {i})" for i, w in enumerate(members))


def _weighted_as(c: dict) -> str:
    if c["count_weighting"] == "none":
        return ""
    if len(set(c.get("member_weightings") or [])) > 1:
        return f", weighted as member 0 was trained ({c['count_weighting']})"
    return ", weighted as in training"


def _loss(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"


def _secs(value) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "? s"
