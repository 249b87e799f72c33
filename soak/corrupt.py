"""Damage each artifact on purpose and check what its loader does (tests and `make soak`).

Kinds of damage: `truncate` (the first half only), `flip` (one bit at a seeded random offset;
`flips` gives many), `vocab` (two vocabulary symbols swapped, the file otherwise well formed:
its zip CRCs, JSON and protobuf all valid). `verdict` loads the damaged file with the project's
own loader and classifies the outcome:

- "rejected": one clear error (ArtifactError, CheckpointError, VocabError) that names the file;
- "harmless": it loads and behaves exactly as the original (a flip in zip padding, say);
- "SILENT": it loads and behaves differently -- wrong names would be served;
- "UNCLEAR": some other exception, or an error that does not name the file.

Only the first two are acceptable.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from core import contract

ARTIFACTS = (contract.CHECKPOINT, *contract.EXPORTS, contract.archive(contract.MODEL))
KINDS = ("truncate", "flip", "vocab")
OK = ("rejected", "harmless")


# ---------------------------------------------------------------- damage


def truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def swap_symbols(symbols: list[str], bos: int = 0, eos: int = 0) -> list[str]:
    """The first two character symbols swapped (same set, other order: other names)."""
    idx = [i for i in range(len(symbols)) if i not in (bos, eos)][:2]
    out = list(symbols)
    out[idx[0]], out[idx[1]] = out[idx[1]], out[idx[0]]
    return out


def swap_in_manifest(text: str | bytes) -> str:
    data = json.loads(text)
    data["symbols"] = swap_symbols(data["symbols"], data.get("bos_id", 0), data.get("eos_id", 0))
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def rewrite_zip(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> None:
    """Copy a zip archive, letting `edit` change (or delete) the members (CRCs are recomputed:
    well formed)."""
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        members = {i.filename: zin.read(i) for i in infos}
    edit(members)
    with zipfile.ZipFile(dst, "w") as zout:
        for info in infos:
            if info.filename in members:
                zout.writestr(info, members[info.filename], compress_type=info.compress_type)


def _member(members: dict[str, bytes], suffix: str) -> str:
    return next(name for name in members if name == suffix or name.endswith("/" + suffix))


def vocab_swapped(src: Path, dst: Path, *, fix_mar_checksums: bool = False) -> None:
    """`src` with its vocabulary's first two symbols swapped, written well formed to `dst`."""
    name = src.name
    if name == contract.VOCAB:
        dst.write_text(swap_in_manifest(src.read_text(encoding="utf-8")), encoding="utf-8")
    elif name == contract.CHECKPOINT:
        import torch

        raw = torch.load(src, map_location="cpu", weights_only=True)
        raw["vocab"]["symbols"] = swap_symbols(raw["vocab"]["symbols"], raw["vocab"]["bos_id"], raw["vocab"]["eos_id"])
        torch.save(raw, dst)
    elif name.endswith(".onnx"):
        import onnx

        proto = onnx.load(str(src))
        for prop in proto.metadata_props:
            if prop.key == contract.VOCAB:
                prop.value = swap_in_manifest(prop.value)
        dst.write_bytes(proto.SerializeToString())  # the checksum entry kept, now stale
    elif name.endswith(".pt"):  # TorchScript: the extra/vocab.json member
        def edit(members):
            key = _member(members, f"extra/{contract.VOCAB}")
            members[key] = swap_in_manifest(members[key]).encode("utf-8")

        rewrite_zip(src, dst, edit)
    elif name.endswith(contract.ARCHIVE_SUFFIX):
        def edit(members):
            members[contract.VOCAB] = swap_in_manifest(members[contract.VOCAB]).encode("utf-8")
            if fix_mar_checksums:  # so that the vocabulary check, not the checksum, must catch it
                sums = json.loads(members["checksums.json"])
                sums["files"][contract.VOCAB] = hashlib.sha256(members[contract.VOCAB]).hexdigest()
                members["checksums.json"] = json.dumps(sums).encode()

        rewrite_zip(src, dst, edit)
    else:
        raise ValueError(f"no vocabulary damage for {name}")


def mar_with_member(src: Path, dst: Path, member: str, data: bytes, *, fix_checksums: bool) -> None:
    """The archive with one member replaced (e.g. a TorchScript file of another training run)."""
    def edit(members):
        members[member] = data
        if fix_checksums:
            sums = json.loads(members["checksums.json"])
            sums["files"][member] = hashlib.sha256(data).hexdigest()
            members["checksums.json"] = json.dumps(sums).encode()

    rewrite_zip(src, dst, edit)


def mar_without_member(src: Path, dst: Path, member: str, *, fix_checksums: bool) -> None:
    """The archive with one member left out; with `fix_checksums` also out of checksums.json,
    so that only the model config still declares it."""
    def edit(members):
        del members[member]
        if fix_checksums:
            sums = json.loads(members["checksums.json"])
            del sums["files"][member]
            members["checksums.json"] = json.dumps(sums).encode()

    rewrite_zip(src, dst, edit)


def damage(src: Path, dst: Path, kind: str, rng: random.Random | None = None) -> None:
    if kind == "truncate":
        dst.write_bytes(truncate(src.read_bytes()))
    elif kind == "flip":
        dst.write_bytes(flip(src.read_bytes(), rng or random.Random(0)))
    elif kind == "vocab":
        vocab_swapped(src, dst)
    else:
        raise ValueError(f"unknown damage {kind!r}; known: {KINDS}")


# ---------------------------------------------------------------- loading and verdicts


def probe(path: Path, reference_dir: Path) -> object:
    """Load `path` with the project's loader for its kind and return what it would serve (raises
    the loader's error). vocab.json is loaded as the server loads it: checked against the
    TorchScript file of `reference_dir`."""
    name = path.name
    if name == contract.CHECKPOINT:
        from model.checkpoint import load_checkpoint

        model, vocab, _ = load_checkpoint(path)
        return vocab.symbols, [(k, v.numpy().tobytes()) for k, v in sorted(model.state_dict().items())]
    if name == contract.VOCAB:
        from model.torchscript import load_torchscript
        from serve.engine import check_vocab_file

        ts = reference_dir / contract.TORCHSCRIPT
        _, vocab, meta = load_torchscript(ts)
        check_vocab_file(path, vocab, meta, ts)
        return json.loads(path.read_text(encoding="utf-8"))
    if name.endswith(contract.ARCHIVE_SUFFIX):
        from serve.archive import check_archive

        return check_archive(path)
    if name.endswith(".onnx") and "generate" in name:
        from core.request import Row
        from runtime.greedy import OnnxGreedy

        greedy = OnnxGreedy.from_path(path)
        rows = [Row(())] + [Row(tuple(greedy.vocab.encode(c))) for c in greedy.vocab.characters]
        return greedy.vocab.symbols, greedy.decode(rows)
    if name.endswith(".onnx"):
        import numpy as np

        from runtime.step import OnnxStep

        step = OnnxStep.from_path(path)
        n = len(step.vocab)
        hidden = np.linspace(-1, 1, step.hidden_shape[0] * n * step.hidden_shape[1], dtype=np.float32)
        logits, hidden_out = step(np.arange(n), hidden.reshape(step.hidden_shape[0], n, step.hidden_shape[1]))
        return step.vocab.symbols, logits.tobytes(), hidden_out.tobytes()
    if name.endswith(".pt"):
        import torch

        from model.torchscript import load_torchscript

        module, vocab, meta = load_torchscript(path)
        n, layers, size = len(vocab), meta["num_layers"], meta["hidden_size"]
        hidden = torch.linspace(-1, 1, layers * n * size).reshape(layers, n, size)
        with torch.inference_mode():
            logits, hidden_out = module(torch.arange(n), hidden)
        return vocab.symbols, logits.numpy().tobytes(), hidden_out.numpy().tobytes()
    raise ValueError(f"no loader for {name}")


def verdict(damaged: Path, original: object, reference_dir: Path) -> tuple[str, str]:
    """(outcome, message) of loading `damaged` (see the module docstring)."""
    from core.errors import ArtifactError
    from core.vocab import VocabError
    from model.checkpoint import CheckpointError

    try:
        got = probe(damaged, reference_dir)
    except (ArtifactError, CheckpointError, VocabError) as exc:
        message = str(exc)
        named = str(damaged) in message or damaged.name in message
        return ("rejected" if named else "UNCLEAR"), message
    except Exception as exc:  # noqa: BLE001 -- exactly what must not happen
        return "UNCLEAR", f"{type(exc).__name__}: {exc}"
    return ("harmless", "loads and behaves as the original") if got == original else \
        ("SILENT", "loads and behaves differently")


def matrix(artifact_dir: Path, mar: Path | None, flips: int = 10, seed: int = 0,
           work: Path | None = None) -> list[dict]:
    """Every artifact of `artifact_dir` (and `mar`) x every kind of damage; `flips` seeded
    single-bit flips each. One row per damaged file: artifact, kind, outcome, message."""
    work = Path(work or tempfile.mkdtemp(prefix="charrnn-corrupt-"))
    rows = []
    try:
        rng = random.Random(seed)
        for name in ARTIFACTS:
            src = mar if name.endswith(contract.ARCHIVE_SUFFIX) else artifact_dir / name
            if src is None or not src.is_file():
                continue
            original = probe(src, artifact_dir)
            for kind in KINDS:
                for attempt in range(flips if kind == "flip" else 1):
                    case = work / f"{kind}-{attempt}"
                    case.mkdir(parents=True, exist_ok=True)
                    dst = case / src.name
                    damage(src, dst, kind, rng)
                    outcome, message = verdict(dst, original, artifact_dir)
                    rows.append({"artifact": name, "kind": kind, "outcome": outcome, "message": message})
                    shutil.rmtree(case, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows
