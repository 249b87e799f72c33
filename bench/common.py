"""Shared pieces of `make bench`: the one-line training settings; the median/min/max summaries
(tools.summary, named here too for bench's modules; the machine stamp: tools/machine.py; tables:
tools/tables.py)."""

from __future__ import annotations

from tools.summary import fmt, summary

__all__ = ["describe", "fmt", "summary"]


def describe(config: dict) -> str:
    """A training configuration (TrainConfig as a dict) in one line, for report tables."""
    schedule = ("cosine" if config["lr_schedule"] == "cosine"
                else "constant" if config["lr_decay"] == 1.0 else f"×{config['lr_decay']}/epoch")
    layers = f"{config['num_layers']}×" if config["num_layers"] > 1 else ""
    threads = f", {config['threads']} thread(s)" if config.get("threads") else ""
    pools = f", length pools of {config['length_pool']}" if config.get("length_pool", 0) > 1 else ""
    return (f"{config['cell'].upper()} {layers}{config['hidden_size']}, batch {config['batch_size']}, "
            f"lr {config['lr']:g} {schedule}, counts {config['count_weighting']}{pools}{threads}")
