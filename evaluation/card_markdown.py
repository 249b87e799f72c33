"""model_card.md's text (evaluation.card computes its figures): Hugging Face's front matter and
sections, and the corpus's provenance, quoted from the README.md beside a corpus of the project.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from core import contract
from core.model_card import FENCE, FINGERPRINT
from core.request import DEFAULT_MAX_LENGTH
from core.vocab import BOUNDARY
from data.sources import DATA_DIR, PROVENANCE, project_corpus
from evaluation.describe import label, member_weightings, shape, teacher_of
from evaluation.report import Inputs
from model.config import artifact_dir, known_presets
from model.ensemble import members_of
from tools.tables import table

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE = "pt"  # the project's corpora: Brazilian first names (a user's own corpus: not stated)
LIMIT_HEADING = re.compile(r"limit|caveat|known issue", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})(\s.*)$")
# what the training run recorded (the checkpoint's metrics): key, label, format
RECORD = (("best_epoch", "best epoch", "{}"), ("epochs_run", "epochs run", "{}"), ("stopped_by", "stopped by", "{}"),
          ("seconds", "training seconds", "{:.1f}"),
          ("best_val_loss", "best validation loss (nats/symbol)", "{:.4f}"),
          ("train_names", "training names", "{:,}"), ("val_names", "validation names", "{:,}"))
WEIGHTINGS = {"none": "every distinct spelling weighs the same in training",
              "log": "names are drawn in training by the logarithm of their count",
              "sqrt": "names are drawn in training by the square root of their count",
              "linear": "names are drawn in training in proportion to their count"}


@dataclass(frozen=True)
class Provenance:
    """The README.md that documents a corpus of the project: its path (relative to the
    repository) and its text; `source`, the project corpus the training corpus is or was built from."""

    path: Path
    text: str
    source: Path


def corpus_provenance(corpus: str | Path, data_dir: Path | None = None) -> Provenance | None:
    """The README.md of the project corpus (under `data_dir`, default DATA_DIR) that `corpus` is or
    was built from (data.sources.project_corpus), else None: a user's own corpus, whose source the
    project does not know."""
    data = (data_dir or DATA_DIR).resolve()
    source = project_corpus(corpus, data)
    if source is None:
        return None
    readme = source.parent / PROVENANCE
    return Provenance(readme.relative_to(data.parent), readme.read_text(encoding="utf-8"),
                      source.relative_to(data.parent))


def code_license() -> str | None:
    """The project's licence as pyproject.toml declares it (an SPDX id, e.g. "MIT")."""
    try:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = project.get("license")
    return value if isinstance(value, str) else (value or {}).get("text")


def _front_matter(inputs: Inputs, numbers: dict, provenance: Provenance | None, corpus: str) -> str:
    lik = numbers["likelihood"]
    fingerprint = inputs.ckpt.get("fingerprint")
    metrics = [{"type": "nll", "name": f"validation NLL per {who} (nats/symbol)",
                "value": round(lik["model"][key]["nats_per_symbol"], 4)}
               for who, key in (("name", "val"), ("person", "val_per_person"))]
    metrics.append({"type": "perplexity", "name": "validation perplexity per symbol, per name",
                    "value": round(math.exp(lik["model"]["val"]["nats_per_symbol"]), 4)})
    licence = code_license()
    meta = {
        **({"language": [LANGUAGE]} if provenance else {}),
        **({"license": licence.lower()} if licence else {}),
        "pipeline_tag": "text-generation",
        "tags": ["character-level", "name-generation", *sorted({m.config.cell for m in members_of(inputs.model)}),
                 *_kind_tags(inputs), "pytorch", "onnx", "torchscript",
                 "torchserve"],
        "datasets": [corpus],
        "metrics": ["perplexity"],
        FINGERPRINT: fingerprint,
        "model-index": [{"name": f"charrnn-{fingerprint}", "results": [{
            "task": {"type": "text-generation", "name": "Name generation"},
            "dataset": {"type": corpus, "name": corpus, "split": "validation"},
            "metrics": metrics}]}],
    }
    return f"{FENCE}\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)}{FENCE}\n"


def _kind_tags(inputs: Inputs) -> list[str]:
    return (["ensemble"] if len(members_of(inputs.model)) > 1 else []) + (
        ["distillation"] if teacher_of(inputs.ckpt) else [])


def model_type(inputs: Inputs, params: int) -> str:
    """The card's model-type line: a single model's cell and size; an ensemble's members, how it
    averages them and what a step costs; a distilled student's teacher."""
    cfg, members = inputs.model.config, members_of(inputs.model)
    step = "one recurrent step `(char, hidden) -> (logits, hidden_out)` exported to TorchScript and ONNX"
    if len(members) > 1:
        shapes = [shape(m.config) for m in members]
        alike = len(set(shapes)) == 1
        what = f"{len(members)} {shapes[0]} networks" if alike else f"{len(members)} networks ({', '.join(shapes)})"
        trained = ((inputs.ckpt.get("metrics") or {}).get("members")  # model.members' record, when it made them
                   and f" trained side by side (each its own seed"
                       f"{', count weighting' if len(set(member_weightings(inputs.ckpt))) > 1 else ''})") or ""
        return (f"- **Model type:** character-level language model, an ensemble of {what}{trained}, "
                f"{params:,} parameters in all. Each step runs every member and averages the {len(members)} members' "
                f"next-character probabilities (its logits are the log of their mean), so a step costs {len(members)}× "
                f"a member's, and the hidden state holds the members' states side by side ({cfg.hidden_size} units); "
                f"served as {step}, the same contract as a single model's.")
    text = (f"- **Model type:** character-level language model, {cfg.cell.upper()} with {cfg.num_layers} layer(s) of "
            f"{cfg.hidden_size} units, {params:,} parameters; {step}.")
    teacher = teacher_of(inputs.ckpt)
    if teacher:
        text += (f" Distilled from the teacher checkpoint `{teacher}`: trained on that model's next-character "
                 "distributions over the training names instead of the names' characters alone, at one model's "
                 "cost per step.")
    return text


def _nested(markdown: str, top: int) -> str:
    """A quoted page with its headings shifted so that its highest becomes level `top` (code fences
    left alone), so that it nests under the card's section."""
    lines, fenced, found = markdown.splitlines(), False, []
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        if m:
            found.append((i, m))
    shift = top - min((len(m.group(1)) for _, m in found), default=top)
    for i, m in found:
        lines[i] = f"{'#' * max(1, min(6, len(m.group(1)) + shift))}{m.group(2)}"
    return "\n".join(lines).strip()


def _sections(markdown: str) -> list[tuple[str, str]]:
    """(heading, text) of each section of a page, its text before the first heading under ""."""
    found: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        if m:
            found.append((m.group(2).strip(), [line]))
        else:
            found[-1][1].append(line)
    return [(h, "\n".join(lines)) for h, lines in found if "\n".join(lines).strip()]


def percent(logp: float) -> str:
    p = 100 * math.exp(logp)
    return f"{p:.3g}%" if p >= 0.001 else f"{p:.1e}%"


def _nll(r: dict) -> list[str]:
    return [f"{r['nats_per_symbol']:.4f}", f"{r['bits_per_char']:.3f}"]


def _preset(checkpoint: Path) -> str | None:
    """The preset whose artifact folder holds the checkpoint (make's PRESET=NAME), if any."""
    folder = Path(checkpoint).parent
    return next((name for name in known_presets() if folder == Path(artifact_dir(name))
                 or folder.resolve() == (ROOT / artifact_dir(name)).resolve()), None)


def _frequency(weightings: list[str]) -> str:
    """The Frequency limitation: the count weighting (an ensemble's members': each of theirs)."""
    if len(weightings) == 1:
        w = weightings[0]
        return (f"- **Frequency.** `count_weighting` {w}: {WEIGHTINGS.get(w, 'as recorded')}"
                + ("; its most likely names lean towards the names many people have." if w != "none" else
                   "; rare spellings get as much weight as common names, so its most likely names can read unlike "
                   "the names people have."))
    return ("- **Frequency.** The members weigh the corpus counts differently (`count_weighting` "
            + ", ".join(f"{w}: {WEIGHTINGS.get(w, 'as recorded')}" for w in weightings)
            + "); the ensemble averages their next-character distributions, so its most likely names mix both "
              "leanings: see them under Most likely names.")


def _member_record(metrics: dict) -> list[list[str]]:
    """An ensemble's record rows: the best member's validation loss and each member's run."""
    members = metrics.get("members") or []
    if not members:
        return []
    rows = [["members (trained side by side)", str(len(members))]]
    if metrics.get("best_member_val_loss") is not None:
        rows.append(["best member's validation loss (nats/symbol)", f"{metrics['best_member_val_loss']:.4f}"])
    for i, m in enumerate(members):
        loss = m.get("best_val_loss")
        rows.append([f"member {i}", (f"seed {m.get('seed')}, count weighting {m.get('count_weighting')}, best "
                                     f"epoch {m.get('best_epoch')} of {m.get('epochs_run')}, validation loss "
                                     f"{f'{loss:.4f}' if isinstance(loss, (int, float)) else '?'}")])
    return rows


def render_card(inputs: Inputs, numbers: dict) -> str:
    """model_card.md's text."""
    provenance = corpus_provenance(inputs.corpus)
    # the data set a card names: the project's own file when the corpus is, or was built from, one
    corpus = str(provenance.source) if provenance else str(inputs.corpus)
    corpus_md = f"`{corpus}`"
    if provenance and Path(inputs.corpus).resolve() != (DATA_DIR.parent / provenance.source).resolve():
        corpus_md = f"`{inputs.corpus}` (built by `make data` from `{corpus}`)"
    ckpt, vocab = inputs.ckpt, inputs.vocab
    args, metrics = ckpt.get("train_args") or {}, ckpt.get("metrics") or {}
    lik, fingerprint = numbers["likelihood"], ckpt.get("fingerprint")
    mv, bv = lik["model"]["val"], lik["bigram"]["val"]
    mp, bp = lik["model"]["val_per_person"], lik["bigram"]["val_per_person"]
    params = sum(p.numel() for p in inputs.model.parameters())
    described = label(inputs.model) + (" (distilled)" if teacher_of(ckpt) else "")
    counted = any(e.count != 1 for e in inputs.entries)
    weightings = sorted(set(member_weightings(ckpt))) or [str(args.get("count_weighting", inputs.count_weighting))]
    preset = _preset(inputs.checkpoint)
    make = f" PRESET={preset}" if preset else ""
    characters = "".join(vocab.characters)
    licence = code_license()

    if provenance:
        quoted = _sections(provenance.text)
        limits = [(h, t) for h, t in quoted if h and LIMIT_HEADING.search(h)]
        about = [(h, t) for h, t in quoted if (h, t) not in limits]
        data_text = [(f"The project's corpus {corpus_md}. Its provenance, licence and limits have one home, "
                     f"`{provenance.path}` in the repository, quoted here as it stood when this card was written:"),
                     "", _nested("\n\n".join(t for _, t in about), 4), ""]
        data_limits = ([f"The corpus's own limits, from `{provenance.path}`:", "",
                        _nested("\n\n".join(t for _, t in limits), 3), ""] if limits else
                       [f"The corpus's own limits: see its provenance under Training data (`{provenance.path}`).", ""])
    else:
        data_text = [(f"The user's own corpus {corpus_md}: not one of the project's corpora, so this card knows "
                     "nothing of its source, licence or limits. Whoever shares this model should state them "
                     "here, and make sure the names may be used this way."), ""]
        data_limits = ["The corpus's own limits are unknown to this card (the user's own corpus).", ""]

    per_person = (f"per person: each validation name weighted by its corpus count ({mp['people']:,} people carry the "
                  f"{mp['names']:,} validation names), so a name counts as often as it is met"
                  if counted else "per person: the corpus has no counts, so per person equals per name")
    rows = [["CharRNN (this model)", *_nll(mv), *_nll(mp)], ["character bigram (baseline)", *_nll(bv), *_nll(bp)]]
    gain, gain_person = bv["nats_per_symbol"] - mv["nats_per_symbol"], bp["nats_per_symbol"] - mp["nats_per_symbol"]

    nbest_text = []
    for entry in numbers["nbest"]:
        prefix = entry["prefix"]
        title = "Any name (the empty prefix)" if not prefix else f"Names starting with “{prefix}”"
        nbest_text += [f"### {title}", "",
                       table(["rank", "name", "probability", "log-probability", "in the corpus"],
                             [[i, name, percent(logp), f"{logp:.4f}", "new" if kind == "new" else f"yes ({kind})"]
                              for i, (name, logp, kind) in enumerate(entry["names"], start=1)], "rlrrl"), ""]
        if not entry["complete"]:
            nbest_text += [("(the search's expansion bound stopped it before every name was proven: the list holds "
                           "the proven ones)"), ""]

    train_rows = [[f"`{k}`", f"`{v}`"] for k, v in args.items() if not (k == "extra" and not v)]
    record = [[what, fmt.format(metrics[k])] for k, what, fmt in RECORD if metrics.get(k) is not None]
    record += _member_record(metrics)
    example = next((e["prefix"] for e in numbers["nbest"] if e["prefix"]), "")

    out = [
        _front_matter(inputs, numbers, provenance, corpus),
        f"# Model card: CharRNN name generator, {described} (`{fingerprint}`)",
        "",
        (f"A character-level recurrent network that writes first names one character at a time, trained on "
         f"{corpus_md} ({len(inputs.entries):,} distinct names). This card is generated from its checkpoint and "
         "its evaluation (`make card`, `make eval`): regenerate it rather than edit it."),
        "",
        "## Model details",
        "",
        model_type(inputs, params),
        (f"- **Vocabulary:** {len(vocab)} symbols: the end-of-name token `{BOUNDARY}` and {len(vocab.characters)} "
        f"characters: `{characters}`."),
        *([f"- **Language:** `{LANGUAGE}` (Brazilian first names)."] if provenance else []),
        (f"- **Fingerprint:** `{fingerprint}`, the same in every artifact of this training run "
        f"(`{contract.VOCAB}`, the exports, the archives, this card)."),
        f"- **Licence:** {licence} (the project's code, and these weights it trained)." if licence else
        "- **Licence:** not declared (pyproject.toml names none).",
        (f"- **Files:** `{contract.CHECKPOINT}`, `{contract.TORCHSCRIPT}`, `{contract.ONNX_STEP}`, "
        f"`{contract.ONNX_GENERATE}`, `{contract.VOCAB}`; the TorchServe archives "
        f"`{contract.MODEL_STORE}/{contract.archive(contract.MODEL)}` and "
        f"`{contract.archive(contract.SESSION_MODEL)}`, and the web page, carry this card."),
        "",
        "## Uses",
        "",
        "### Direct use",
        "",
        ("Suggesting and completing first names as people in Brazil write them: autocompletion as someone types, "
        "placeholder and synthetic names for test data and demos, brainstorming names. Small enough to run in a "
        "browser or on one CPU core."),
        "",
        "### Out-of-scope use",
        "",
        ("- Any decision about a real person, and inferring anyone's gender, ethnicity, region, age or origin from "
        "a name: the model knows none of these."),
        ("- A list of real names: it invents plausible strings, and a generated name may or may not be one people "
        "have."),
        "- Full names (surnames), or names of other languages and cultures than its corpus.",
        "",
        "## Bias, risks, and limitations",
        "",
        ("- **First names only, one at a time.** It continues a prefix; it has no notion of a surname or of a "
        "person."),
        ("- **No gender or region modelled.** Its only input is the preceding characters: it cannot be asked for a "
        "girl's or a boy's name, or for a name of one region or decade."),
        _frequency(weightings),
        *([("- **Capitalisation by a rule.** The corpus was title-cased when read (`title_case`): its own "
           "capitalisation is not the model's.")] if args.get("title_case") or inputs.title_case else []),
        (f"- **Characters.** It writes and reads only the {len(vocab.characters)} characters above: a prefix with "
        "any other is refused, and no name it writes holds one."),
        f"- **Length.** Names end within {DEFAULT_MAX_LENGTH} characters (the decoders' default cap).",
        ("- **Evaluation.** It is measured on held-out names of its own corpus (split by a hash of the name), not "
        "on names from elsewhere."),
        ("- **Review what it writes** before showing it to people: a new name can be odd, or a word nobody "
        "would choose for a child."),
        "",
        *data_limits,
        "## Training details",
        "",
        "### Training data",
        "",
        *data_text,
        (f"Split by a hash of each name: {len(inputs.train):,} training and {len(inputs.val):,} validation names "
         f"(`val_fraction` {inputs.val_fraction}); the validation names were never trained on."),
        "",
        "### Training procedure",
        "",
        "The training configuration recorded in the checkpoint (`python -m model.train --help` explains each):",
        "",
        table(["option", "value"], train_rows) if train_rows else "(the checkpoint records no configuration)",
        "",
        *(["What the run recorded:", "", table(["", "value"], record), ""] if record else []),
        "## Evaluation",
        "",
        (f"On the {len(inputs.val):,} validation names: negative log-likelihood in nats per symbol (a character or "
         "the end token: the training loss) and bits per character (a name's whole cost over its characters); "
         f"per name, each distinct spelling counts once; {per_person}. The baseline is a character bigram "
         f"P(next | previous) fitted on the training names, add-α smoothed (α = {numbers['bigram_alpha']}, chosen "
         "by validation NLL, which flatters it)."),
        "",
        table(["model", "per name: nats/symbol", "bits/character", "per person: nats/symbol", "bits/character"],
              rows, "lrrrr"),
        "",
        (f"The model is {gain:.4f} nats/symbol {'below' if gain >= 0 else 'ABOVE'} the bigram per name and "
         f"{gain_person:.4f} {'below' if gain_person >= 0 else 'ABOVE'} per person (lower is better); validation "
         f"perplexity per symbol {math.exp(mv['nats_per_symbol']):.3f}. `make eval` writes the full report "
         "(samples, their novelty, length and first-letter distributions, loss curves)."),
        "",
        "## Most likely names",
        "",
        ("The exact n-best (model.nbest): the most probable whole names under the model, best first, for the empty "
         "prefix and the corpus's most common starts. A name's probability is the model's for the whole name, "
         "prefix included, end token included (natural log)."),
        "",
        *nbest_text,
        "## How to use",
        "",
        (f"- **HTTP (TorchServe):** `make serve{make}`, then `POST /predictions/{contract.MODEL}` with "
         f'`{{"prefix": "{example}", "num": 3}}` (docs/serving.md).'),
        (f"- **Embedded, no PyTorch:** load `{contract.ONNX_GENERATE}` or `{contract.ONNX_STEP}` with ONNX Runtime "
         "in Python or Node.js, the vocabulary inside (`python -m tools.generate --backend onnx --prefix "
         f"'{example}'`; docs/embedding.md)."),
        f"- **In a browser:** `make web{make} && make web-serve{make}`, names as you type (docs/web.md).",
        "",
        "## Licence and citation",
        "",
        (f"The code and these weights: {licence} (pyproject.toml). " if licence else "")
        + ("The data keeps its own licence: see Training data. Cite the project's repository, and the corpus as "
           "its provenance asks."),
        "",
    ]
    return "\n".join(out)
