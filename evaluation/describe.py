"""What a checkpoint's model is, in the words every report uses: a single model ("GRU 1×96"), an
ensemble ("ensemble of 2 GRU 1×96", its members averaged as one step: model.ensemble) or a
distilled student (a single model whose train_args name its teacher checkpoint: model.distill).

One home for those words, so the report, its result page, the model card and the comparison
(evaluation.compare) say the same thing of the same model.
"""

from __future__ import annotations

from model.ensemble import CharRNNEnsemble, members_of


def shape(config) -> str:
    """A single model's shape: cell, layers × units ("GRU 1×96")."""
    return f"{config.cell.upper()} {config.num_layers}×{config.hidden_size}"


def label(model) -> str:
    """"GRU 1×96" for a single model; "ensemble of 2 GRU 1×96" for an ensemble of alike members,
    "ensemble of 2 (GRU 1×96, RNN 1×128)" for unlike ones."""
    if not isinstance(model, CharRNNEnsemble):
        return shape(model.config)
    shapes = [shape(m.config) for m in members_of(model)]
    if len(set(shapes)) == 1:
        return f"ensemble of {len(shapes)} {shapes[0]}"
    return f"ensemble of {len(shapes)} ({', '.join(shapes)})"


def teacher_of(ckpt: dict) -> str | None:
    """The teacher checkpoint a distilled model was trained from (its train_args), else None."""
    teacher = (ckpt.get("train_args") or {}).get("teacher")
    return str(teacher) if teacher else None


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def model_info(model, ckpt: dict) -> dict:
    """The report's "model" record: the single model's config (cell, layers, hidden size, ...), or
    for an ensemble its members' common vocabulary and layers, its state width (the members' sizes
    side by side) and each member's config; with parameters, member count, label and teacher."""
    if isinstance(model, CharRNNEnsemble):
        config = model.config
        base = {"vocab_size": config.vocab_size, "hidden_size": config.hidden_size, "num_layers": config.num_layers,
                "cell": config.cell, "member_configs": config.to_dict()["members"]}
    else:
        base = model.config.to_dict()
    return {**base, "parameters": parameters(model), "members": len(members_of(model)), "label": label(model),
            "teacher": teacher_of(ckpt)}


def member_weightings(ckpt: dict) -> list[str]:
    """The count weighting each member of an ensemble was trained with (its metrics record them),
    or [] for a single model."""
    members = (ckpt.get("metrics") or {}).get("members") or []
    return [str(m.get("count_weighting", "?")) for m in members]
