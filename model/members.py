"""An ensemble's members trained side by side: one process and one torch thread per member, each
a plain model.train.train run with its own seed (and count weighting, member_weightings), all
within the same max_seconds, so K members cost the wall-clock of one model on K free cores.

The members come back as one model.ensemble.CharRNNEnsemble; its metrics give each member's and
the ensemble's validation NLL, its history every member's epochs (each row names its member).
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import replace

import torch

from core.vocab import Vocab
from data.corpus import Entry, split
from model.charrnn import CharRNN, ModelConfig
from model.config import TrainConfig
from model.ensemble import CharRNNEnsemble


def member_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """Each member's own run: seed + i, the i-th of member_weightings (in turn), one thread."""
    weightings = cfg.weightings() or [cfg.count_weighting]
    return [replace(cfg, members=1, seed=cfg.seed + i, count_weighting=weightings[i % len(weightings)], threads=1)
            for i in range(cfg.member_count())]


class MemberError(RuntimeError):
    """A member's training failed or its process died; the message says which and how."""


def _member_main(conn, entries: list[Entry], cfg: TrainConfig, progress: bool) -> None:
    """One member's process: train, then send ("ok", (config, weights as torch.save bytes,
    metrics, history)) or ("error", text) back to the parent, and end."""
    import io
    import traceback

    from model.train import train

    # a forked member inherits the command's SIGTERM handler (core.atomic.exit_on_sigterm), which
    # is for the parent's temporary file: the parent's terminate must end a member at once; Ctrl-C
    # reaches the whole process group, and the parent ends the members itself
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        model, _vocab, metrics, history = train(entries, cfg, progress=progress)
        weights = io.BytesIO()  # plain bytes: nothing in flight depends on this process living on
        torch.save(model.state_dict(), weights)
        conn.send(("ok", (model.config.to_dict(), weights.getvalue(), metrics, history)))
    except Exception as exc:  # noqa: BLE001 -- reported to the parent, which raises MemberError
        conn.send(("error", "".join(traceback.format_exception_only(exc)).strip()))
    finally:
        conn.close()


def run_members(entries: list[Entry], configs: list[TrainConfig], progress: bool) -> list[tuple]:
    """Train each config in a process of its own, all at once; their results in order. A member
    that fails or dies (killed, out of memory) ends the others and raises MemberError: a pool
    would quietly replace the dead process and wait for its result forever."""
    from multiprocessing.connection import wait

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    procs = []
    try:
        for i, cfg in enumerate(configs):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_member_main, args=(send, entries, cfg, progress and i == 0),
                                      name=f"member-{i}", daemon=True)
            process.start()
            send.close()  # the member holds the only write end: its death reads as end of file
            procs.append((process, receive))
        results: list = [None] * len(configs)
        waiting = {receive: i for i, (_, receive) in enumerate(procs)}
        while waiting:
            for receive in wait(list(waiting)):
                i = waiting.pop(receive)
                try:
                    status, payload = receive.recv()
                except EOFError:
                    process = procs[i][0]
                    process.join(5)
                    raise MemberError(f"member {i} (seed {configs[i].seed}) ended without a result (exit code "
                                      f"{process.exitcode}: killed, or out of memory?); the others were stopped") from None
                if status != "ok":
                    raise MemberError(f"member {i} (seed {configs[i].seed}) failed: {payload}")
                results[i] = payload
        return results
    finally:
        for process, receive in procs:
            if process.is_alive():
                process.terminate()
            process.join()
            receive.close()


def train_members(entries: list[Entry], cfg: TrainConfig, *, progress: bool = True,
                  log=print) -> tuple[CharRNNEnsemble, Vocab, dict, list[dict]]:
    """Train cfg.member_count() members in parallel; return (ensemble, vocabulary, metrics, history).
    Only the first member draws a progress bar (they share the clock)."""
    import io

    from model.train import encode_names, evaluate

    configs = member_configs(cfg)
    if len(configs) < 2:
        raise ValueError(f"an ensemble needs at least 2 members; members = {cfg.members} gives {len(configs)}")
    results = [(config, torch.load(io.BytesIO(weights), weights_only=True), metrics, history)
               for config, weights, metrics, history in run_members(entries, configs, progress)]
    members = []
    for config, state, _metrics, _history in results:
        member = CharRNN(ModelConfig.from_dict(config))
        member.load_state_dict(state)
        members.append(member.eval())
    ensemble = CharRNNEnsemble.of(members).eval()
    vocab = Vocab.from_names(e.name for e in entries)
    train_entries, val_entries = split(entries, cfg.val_fraction)
    val_data = encode_names([e.name for e in val_entries], vocab) if val_entries else None
    if cfg.threads:  # the ensemble's validation in this process, threads as model.train.train sets them
        torch.set_num_threads(cfg.threads)
    member_metrics = [{**r[2], "seed": c.seed, "count_weighting": c.count_weighting} for r, c in zip(results, configs)]
    metrics = {
        "best_val_loss": evaluate(ensemble, val_data, torch.device("cpu")),
        "members": member_metrics,
        "best_member_val_loss": min(m["best_val_loss"] for m in member_metrics),
        "seconds": max(m["seconds"] for m in member_metrics),
        "stopped_by": member_metrics[0]["stopped_by"],
        "train_names": len(train_entries),
        "val_names": len(val_entries),
        "parameters": sum(p.numel() for p in ensemble.parameters()),
    }
    history = [{"member": i, **row} for i, r in enumerate(results) for row in r[3]]
    for i, m in enumerate(member_metrics):
        log(f"member {i} (seed {m['seed']}, count weighting {m['count_weighting']}): validation loss "
            f"{m['best_val_loss']:.4f} at epoch {m['best_epoch']} of {m['epochs_run']}")
    return ensemble, vocab, metrics, history

