"""The best single model, an ensemble and a distilled student side by side: validation NLL per name
and per person, parameters, the cost of a greedy name, and the exact n-best lists of a few prefixes.

What is compared (checkpoint_candidates): for an ensemble's checkpoint, each of its members (the
best of them by validation NLL per name, and by NLL per person, are the best single models each
figure is set against) and the ensemble; for a
distilled student's (a single model whose train_args name a teacher checkpoint: model.distill),
the teacher's members (when the teacher is an ensemble), the teacher and the student. A
teacher that is not there, or that cannot be scored on the student's split, is said, and the rest
is compared. A plain single model has nothing to compare.

Every figure is the one definition the report uses: validation NLL from
evaluation.report.model_val_nll (model_nats_per_name + person_nll) on the checkpoint's own split;
the n-best lists from model.nbest (the exact search) over the eager step.

The cost (time_greedy): the model's step scripted as every export is (torch.jit.script(
model.as_step())), one torch thread, no gradient. "ms per greedy name": one greedy name per prefix
(the empty one and each first letter of the corpus), decoded one request at a time, batch 1, by
the project's torch decoding loop (model.decode.decode, as the server's eager path), timed round
by round: a round decodes every prefix once; the figure is a round's time over its names, median
(min–max) of the rounds, each model's rounds taking turns so that background load falls on all
alike, after one unrecorded round each. "µs per step": the scripted step alone, batch 1, called
STEP_CALLS times in a row per round. Used by `make eval` (evaluation.__main__) and the quality
benchmark (bench/quality.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.request import make_rows
from core.vocab import Vocab, VocabError
from evaluation.card_markdown import percent
from evaluation.describe import label, parameters, teacher_of
from evaluation.report import Inputs, model_val_nll
from model.checkpoint import CheckpointError, load_checkpoint
from model.decode import decode
from model.ensemble import CharRNNEnsemble, members_of
from model.generate import TorchGenerator
from tools.summary import fmt, summary
from tools.tables import table

ROOT = Path(__file__).resolve().parent.parent
NBEST_PREFIXES = ("", "Ma", "Jo", "Ana")
NBEST_NUM = 5
REPEATS = 7  # timed rounds per model
STEP_CALLS = 200  # step calls per round of the step-alone figure
# roles, in the order the table lists them
ROLES = ("member", "teacher member", "ensemble", "teacher", "student")


@dataclass
class Candidate:
    """One model of the comparison. `role`: member (of the ensemble evaluated), teacher member (of
    the student's teacher), ensemble, teacher or student; `name`: its row's label."""

    name: str
    role: str
    model: torch.nn.Module
    best: bool = False  # the best single model per name (the best member by validation NLL per name)
    best_person: bool = False  # and per person (by validation NLL per person; may be the same member)
    figures: dict = field(default_factory=dict)


def member_name(i: int, metrics: dict) -> str:
    """"member 1 (seed 1, counts none)": the seed and count weighting its ensemble's metrics record."""
    members = metrics.get("members") or []
    m = members[i] if i < len(members) else {}
    what = [f"seed {m['seed']}" if "seed" in m else "", f"counts {m['count_weighting']}" if "count_weighting" in m else ""]
    what = [w for w in what if w]
    return f"member {i}" + (f" ({', '.join(what)})" if what else "")


def resolve_teacher(teacher: str, checkpoint: str | Path) -> Path | None:
    """The teacher file a student's train_args name: as written (absolute, or relative to where the
    command runs: make runs in the repository), else relative to the repository; None if neither is
    a file."""
    for path in (Path(teacher), ROOT / teacher):
        if path.is_file():
            return path
    return None


def checkpoint_candidates(inputs: Inputs) -> tuple[list[Candidate], dict | None]:
    """What `make eval` compares for this checkpoint, and for a student, what became of its
    teacher: {"named": the path its train_args give, "path", "fingerprint", "status" ("compared",
    "missing", "unreadable", "retrained", "other vocabulary", "other split"), "detail"}."""
    model, ckpt = inputs.model, inputs.ckpt
    if isinstance(model, CharRNNEnsemble):
        metrics = ckpt.get("metrics") or {}
        return ([Candidate(member_name(i, metrics), "member", m) for i, m in enumerate(members_of(model))]
                + [Candidate(label(model), "ensemble", model)]), None
    named = teacher_of(ckpt)
    if named is None:
        return [], None
    student = Candidate(f"student: {label(model)}", "student", model)
    info = {"named": named, "path": None, "fingerprint": None, "status": "compared", "detail": ""}
    path = resolve_teacher(named, inputs.checkpoint)
    if path is None:
        info.update(status="missing", detail=f"`{named}` is not there (retrained or removed since)")
        return [student], info
    info["path"] = str(path)
    try:
        teacher, vocab, tckpt = load_checkpoint(path)
    except CheckpointError as exc:
        info.update(status="unreadable", detail=str(exc))
        return [student], info
    info["fingerprint"] = tckpt.get("fingerprint")
    taught_by = (ckpt.get("metrics") or {}).get("teacher_fingerprint")
    if taught_by is not None and taught_by != info["fingerprint"]:
        info.update(status="retrained", detail=f"it holds another training run (fingerprint {info['fingerprint']}) than "
                                               f"the one the student learned from ({taught_by})")
        return [student], info
    if vocab.symbols != inputs.vocab.symbols:
        info.update(status="other vocabulary",
                    detail=f"its vocabulary ({len(vocab)} symbols) is not the student's ({len(inputs.vocab)})")
        return [student], info
    tm = tckpt.get("metrics") or {}
    if (tm.get("train_names"), tm.get("val_names")) != (len(inputs.train), len(inputs.val)):
        info.update(status="other split",
                    detail=(f"it was trained on {tm.get('train_names')} training and {tm.get('val_names')} "
                            f"validation names, the student on {len(inputs.train)} and {len(inputs.val)}: it may "
                            "have trained on the student's validation names"))
        return [student], info
    cands = []
    if isinstance(teacher, CharRNNEnsemble):
        cands = [Candidate(f"teacher's {member_name(i, tm)}", "teacher member", m)
                 for i, m in enumerate(members_of(teacher))]
    return [*cands, Candidate(f"teacher: {label(teacher)}", "teacher", teacher), student], info


def _encodable(vocab: Vocab, prefixes: Sequence[str]) -> tuple[list[str], list[str]]:
    ok, dropped = [], []
    for p in prefixes:
        try:
            vocab.encode(p)
            ok.append(p)
        except VocabError:
            dropped.append(p)
    return ok, dropped


def time_greedy(models: Sequence[torch.nn.Module], vocab: Vocab, prefixes: Sequence[str], repeats: int = REPEATS,
                step_calls: int = STEP_CALLS) -> list[dict]:
    """Each model's cost of a greedy name and of one step (the module docstring says what is
    timed), and its greedy name for each prefix."""
    rows = [make_rows(vocab, p, num=1, temperature=0.0, seed=0)[0] for p in prefixes]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps = [torch.jit.script(m.as_step()).eval() for m in models]
        shapes = [(m.num_layers, m.hidden_size) for m in models]

        def round_of(i: int) -> list[list[int]]:
            return [decode(steps[i], [row], bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=shapes[i])[0]
                    for row in rows]

        def step_round(i: int) -> None:
            char = torch.tensor([vocab.bos_id])
            hidden = torch.zeros(shapes[i][0], 1, shapes[i][1])
            with torch.inference_mode():
                for _ in range(step_calls):
                    steps[i](char, hidden)

        names = [[vocab.decode(ids) for ids in round_of(i)] for i in range(len(models))]  # and warm-up
        for i in range(len(models)):
            step_round(i)
        per_name: list[list[float]] = [[] for _ in models]
        per_step: list[list[float]] = [[] for _ in models]
        for _ in range(repeats):
            for i in range(len(models)):
                started = time.perf_counter()
                round_of(i)
                per_name[i].append((time.perf_counter() - started) * 1e3 / len(rows))
                started = time.perf_counter()
                step_round(i)
                per_step[i].append((time.perf_counter() - started) * 1e6 / step_calls)
    finally:
        torch.set_num_threads(threads)
    return [{"ms_per_name": summary(per_name[i]), "us_per_step": summary(per_step[i]),
             "greedy": dict(zip(prefixes, names[i])), "greedy_length": sum(map(len, names[i])) / len(names[i])}
            for i in range(len(models))]


def nbest_lists(model: torch.nn.Module, vocab: Vocab, prefixes: Sequence[str], num: int, train: set[str],
                val: set[str]) -> dict:
    """The exact n-best of each prefix (model.nbest over the eager step): [name, log-probability,
    training / validation / new] best first, and whether the search proved them all."""
    gen = TorchGenerator(model.step, vocab, (model.num_layers, model.hidden_size))
    out = {}
    for prefix in prefixes:
        found = gen.nbest(prefix, num=num)
        names = [vocab.decode(ids) for ids in found.ids]
        out[prefix] = {"complete": found.complete, "names": [
            [n, lp, "training" if n in train else "validation" if n in val else "new"]
            for n, lp in zip(names, found.logprobs)]}
    return out


def compare(cands: Sequence[Candidate], inputs: Inputs, *, teacher: dict | None = None,
            nbest_prefixes: Sequence[str] = NBEST_PREFIXES, nbest_num: int = NBEST_NUM,
            repeats: int = REPEATS, step_calls: int = STEP_CALLS) -> dict:
    """The side-by-side figures of `cands` on `inputs`' validation split (JSON-ready)."""
    vocab = inputs.vocab
    for c in cands:
        c.figures = {"likelihood": model_val_nll(c.model, vocab, inputs.val), "parameters": parameters(c.model)}
    singles = [c for c in cands if c.role in ("member", "teacher member")]
    if singles:
        min(singles, key=lambda c: c.figures["likelihood"]["val"]["nats_per_symbol"]).best = True
        min(singles, key=lambda c: c.figures["likelihood"]["val_per_person"]["nats_per_symbol"]).best_person = True
    shown = sorted(cands, key=lambda c: ROLES.index(c.role))
    letters = sorted({e.name[0] for e in inputs.entries})
    timing_prefixes = ["", *letters]
    timings = time_greedy([c.model for c in shown], vocab, timing_prefixes, repeats, step_calls)
    prefixes, dropped = _encodable(vocab, nbest_prefixes)
    train, val = {e.name for e in inputs.train}, {e.name for e in inputs.val}
    rows = []
    for c, timing in zip(shown, timings):
        listed = c.best or c.best_person or c.role not in ("member", "teacher member")
        rows.append({"name": c.name, "role": c.role, "best_single": c.best, "best_single_per_person": c.best_person,
                     **c.figures, **timing,
                     "nbest": nbest_lists(c.model, vocab, prefixes, nbest_num, train, val) if listed else None})
    return {"models": rows, "val_names": len(inputs.val), "people": rows[0]["likelihood"]["val_per_person"]["people"]
            if rows else 0, "timing": {"prefixes": timing_prefixes, "repeats": repeats, "step_calls": step_calls,
                                       "threads": 1},
            "nbest": {"prefixes": prefixes, "dropped": dropped, "num": nbest_num}, "teacher": teacher}


def _best(result: dict, key: str = "best_single") -> dict | None:
    """The best single model per name (key "best_single") or per person ("best_single_per_person")."""
    return next((r for r in result["models"] if r.get(key)), None)


def _best_mark(r: dict) -> str:
    if r["best_single"] and r.get("best_single_per_person"):
        return "best single"
    return "best single per name" if r["best_single"] else "best single per person" if r.get(
        "best_single_per_person") else ""


def teacher_sentence(teacher: dict | None) -> str:
    if not teacher:
        return ""
    if teacher["status"] == "compared":
        return (f"Teacher: `{teacher['named']}` as the student's train_args name it, the file as it stands now "
                f"(fingerprint `{teacher['fingerprint']}`).")
    return (f"**The student's teacher `{teacher['named']}` is not compared: {teacher['status']}: "
            f"{teacher['detail']}.** The student is shown without it.")


def markdown(result: dict, heading: str = "##") -> str:
    """The comparison as a section of a report (`heading`: its level)."""
    models, timing, nb = result["models"], result["timing"], result["nbest"]
    best, best_person = _best(result), _best(result, "best_single_per_person")
    roles = {r["role"] for r in models}
    title = "members and ensemble" if "ensemble" in roles else "teacher and student"
    rows = []
    for r in models:
        name = f"**{r['name']}** ({_best_mark(r)})" if _best_mark(r) else r["name"]
        rows.append([name, f"{r['parameters']:,}", f"{r['likelihood']['val']['nats_per_symbol']:.4f}",
                     f"{r['likelihood']['val_per_person']['nats_per_symbol']:.4f}",
                     fmt(r["ms_per_name"], ".3f"), f"{r['greedy_length']:.1f}", fmt(r["us_per_step"], ".1f")])
    out = [f"{heading} Side by side: {title}", ""]
    if result.get("teacher"):
        out += [teacher_sentence(result["teacher"]), ""]
    out += [
        (f"Validation NLL in nats/symbol on the same {result['val_names']:,} validation names (the split the models "
         "were trained on): per "
         f"name, each distinct spelling once; per person, each name weighted by its count ({result['people']:,} "
         "people). Lower is better."),
        "",
        table(["model", "parameters", "val NLL per name", "val NLL per person", "ms per greedy name",
               "characters per greedy name", "µs per step"], rows, "lrrrrrr"),
        "",
    ]
    if best:
        diffs = []
        for r in models:
            if r["role"] in ("member", "teacher member"):
                continue
            dn = r["likelihood"]["val"]["nats_per_symbol"] - best["likelihood"]["val"]["nats_per_symbol"]
            dp = (r["likelihood"]["val_per_person"]["nats_per_symbol"]
                  - best_person["likelihood"]["val_per_person"]["nats_per_symbol"])
            ratio = r["ms_per_name"]["median"] / best["ms_per_name"]["median"]
            step = r["us_per_step"]["median"] / best["us_per_step"]["median"]
            diffs.append(f"{r['name']}: {dn:+.4f} nats/symbol per name, {dp:+.4f} per person, {ratio:.2f}× the "
                         f"time per greedy name, {step:.2f}× per step")
        against = (f"the best single model ({best['name']})" if best is best_person else
                   f"the best single model per name ({best['name']}) and per person ({best_person['name']}); the "
                   "times against the first")
        out += [f"Against {against}: " + "; ".join(diffs) + ".", ""]
    out += [
        (f"Cost: each model's step scripted as the exports are (`torch.jit.script(model.as_step())`), 1 torch "
         f"thread. ms per greedy name: {len(timing['prefixes'])} greedy names (the empty prefix and each first "
         "letter of the corpus), one request at a time, batch 1, by `model.decode.decode`; a round's time over "
         f"its names, median (min–max, n) of {timing['repeats']} rounds, the models taking turns, after an "
         "unrecorded round each; a name costs a step per character and one for its end, so longer greedy names "
         f"cost more. µs per step: the scripted step alone, batch 1, {timing['step_calls']} calls a "
         "round. Measured on the machine above."),
        "",
    ]
    listed = [r for r in models if r["nbest"] is not None]
    out += [f"{heading}# Most likely names, side by side", "",
            ("The exact n-best (`model.nbest`) of each model, best first: the name and the model's probability "
             "of the whole name (prefix and end included); *new*: not in the corpus."), ""]
    if nb["dropped"]:
        out += [f"(prefixes the vocabulary cannot write, left out: {', '.join(repr(p) for p in nb['dropped'])})", ""]
    for prefix in nb["prefixes"]:
        out += [f"{heading}## {'Any name (the empty prefix)' if not prefix else f'Starting with “{prefix}”'}", ""]
        lists = [r["nbest"][prefix]["names"] for r in listed]
        rows = [[i + 1, *[_cell(names[i]) if i < len(names) else "" for names in lists]]
                for i in range(max((len(n) for n in lists), default=0))]
        out += [table(["rank", *[r["name"] for r in listed]], rows, "r" + "l" * len(listed)), ""]
        unproven = [r["name"] for r in listed if not r["nbest"][prefix]["complete"]]
        if unproven:
            out += [f"(the search's expansion bound stopped before proving every name for: {', '.join(unproven)})",
                    ""]
    return "\n".join(out).rstrip() + "\n"


def _cell(entry: list) -> str:
    name, logp, kind = entry
    return f"{name} {percent(logp)}" + (" *new*" if kind == "new" else "")


def summary_lines(result: dict) -> list[str]:
    """A short plain-text side-by-side summary for stdout."""
    rows = [[("* " if r["best_single"] or r.get("best_single_per_person") else "  ") + r["name"], f"{r['parameters']:,}",
             f"{r['likelihood']['val']['nats_per_symbol']:.4f}",
             f"{r['likelihood']['val_per_person']['nats_per_symbol']:.4f}", f"{r['ms_per_name']['median']:.3f}",
             " ".join(f"{p or '(any)'}: {r['nbest'][p]['names'][0][0]}" for p in result["nbest"]["prefixes"]
                      if r["nbest"] and r["nbest"][p]["names"])]
            for r in result["models"]]
    out = ["side by side (validation NLL in nats/symbol; ms per greedy name, batch 1, 1 thread, median; * best single per name or per person):",
           table(["model", "parameters", "per name", "per person", "ms/name", "most likely"], rows, "lrrrr",
                 plain=True)]
    if result.get("teacher") and result["teacher"]["status"] != "compared":
        out.append(f"  teacher not compared: {result['teacher']['status']}: {result['teacher']['detail']}")
    return out
