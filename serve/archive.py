"""Build the TorchServe archives: charrnn.mar (one-shot) and charrnn_session.mar (sessions).

Usage: python -m serve.archive --torchscript artifacts/charrnn.torchscript.pt \
           --vocab artifacts/vocab.json --greedy-graph artifacts/charrnn_generate.onnx \
           --card artifacts/model_card.md --out artifacts/model_store

Each .mar holds the handler (serve/handler.py), the TorchScript step (serialized file), the
vocabulary (vocab.json, checked against the copy inside the TorchScript file when the worker
starts), charrnn.mar also the one-graph greedy decoder (charrnn_generate.onnx, checked against
the same fingerprint; packed into every archive whose config declares it with
`handler.one_graph: true`, and a build without it is refused, so the worker can treat a missing
file as damage rather than fall back), the model card (model_card.md, evaluation.card: the model
travels with its description; refused unless its fingerprint is the export's), its
model-config.yaml (serve/config/<name>.yaml) and the project modules the handler
imports, as packages (core/, model/, runtime/, serve/) so `import serve.engine` works inside the
model directory. The module list is the engine's actual import closure, not a hand-kept list.
checksums.json (serve/checksums.py) holds the SHA-256 of every one of those files; the worker
verifies it before loading anything.

`check_archive` (python -m serve.archive --check FILE.mar ...; run by `make serve` before it
starts TorchServe) unpacks an archive and starts the handler on it in-process, exactly as a
worker would, so a damaged or mismatched archive is refused in a second with one message naming
it, instead of TorchServe retrying a dying worker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

from core import contract
from core.atomic import exit_on_sigterm, signals_deferred
from core.errors import ArtifactError
from core.manifest import parse as parse_vocab
from core.model_card import check_card
from core.vocab import VocabError
from serve import checksums

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "config"
MODELS = contract.MODELS
VERSION = "1.0"


# what the engine imports only when it loads the one-graph decoder (serve.engine, from_artifacts)
LAZY_IMPORTS = ("runtime.greedy",)


def shipped_modules() -> list[Path]:
    """Repository files (relative to ROOT) the handler imports, and the engine's lazy imports
    (LAZY_IMPORTS), with their packages' __init__.py."""
    code = (f"import sys, serve.handler, {', '.join(LAZY_IMPORTS)}; "
            "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    files = set()
    for line in out.splitlines():
        path = Path(line).resolve()
        if path.suffix != ".py" or ROOT not in path.parents or path.parent == ROOT:
            continue
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", "tests") or rel == Path("serve/handler.py"):
            continue
        files.add(rel)
        for parent in rel.parents:
            if parent != Path(".") and (ROOT / parent / "__init__.py").is_file():
                files.add(parent / "__init__.py")
    return sorted(files)


def declares_one_graph(model: str) -> bool:
    """Does serve/config/<model>.yaml declare the one-graph decoder (handler.one_graph: true)?"""
    import yaml

    config = yaml.safe_load((CONFIG_DIR / f"{model}.yaml").read_text(encoding="utf-8")) or {}
    return (config.get("handler") or {}).get("one_graph") is True


def build_archives(torchscript: str | Path, vocab_json: str | Path, out_dir: str | Path,
                   models: tuple[str, ...] = MODELS, greedy_graph: str | Path | None = None,
                   card: str | Path | None = None) -> list[Path]:
    """Write <out_dir>/<model>.mar for each model; returns their paths. `greedy_graph`
    (charrnn_generate.onnx) goes into each archive whose config declares it (handler.one_graph:
    true: the one-shot archive, whose handler decodes greedy names with it on CPU); it is
    required when one does. `card` (model_card.md) goes into every archive, listed in its
    checksums.json like the rest; it must describe this export (its fingerprint)."""
    torchscript, vocab_json, out_dir = Path(torchscript), Path(vocab_json), Path(out_dir)
    greedy_graph = Path(greedy_graph) if greedy_graph is not None else None
    card = Path(card) if card is not None else None
    declaring = [name for name in models if declares_one_graph(name)]
    if declaring and greedy_graph is None:
        raise SystemExit(f"error: {', '.join(f'serve/config/{n}.yaml' for n in declaring)} declares the one-graph "
                         f"decoder (handler.one_graph: true): pass --greedy-graph {contract.default_path(contract.ONNX_GENERATE)} "
                         "(make archive does)")
    for path in (torchscript, vocab_json, *([greedy_graph] if greedy_graph else [])):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (run `make export` first)")
    if card is not None:
        try:
            check_card(card, parse_vocab(vocab_json.read_bytes(), str(vocab_json))[1].get("fingerprint"))
        except (ArtifactError, VocabError) as exc:
            raise SystemExit(f"error: {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    archiver = shutil.which("torch-model-archiver", path=str(Path(sys.executable).parent)) \
        or shutil.which("torch-model-archiver")
    if archiver is None:
        raise SystemExit("error: torch-model-archiver not found (run `make setup`)")
    staging = Path(tempfile.mkdtemp(prefix=".archive-", dir=out_dir))  # same file system: renames
    built = staging / "built"
    built.mkdir()
    try:
        package = staging / "package"
        shipped = shipped_modules()
        for rel in shipped:
            (package / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, package / rel)
        vocab_copy = staging / contract.VOCAB
        shutil.copy2(vocab_json, vocab_copy)
        handler = ROOT / "serve" / "handler.py"
        written = []
        for name in models:
            config = staging / "config" / name / "model-config.yaml"  # the name TorchServe's docs use
            config.parent.mkdir(parents=True)
            shutil.copy2(CONFIG_DIR / f"{name}.yaml", config)
            # checksums.json: every file as it will lie in the worker's model dir
            sums = staging / "sums" / name
            sums.mkdir(parents=True)
            extra = [(contract.ONNX_GENERATE, greedy_graph)] if name in declaring else []
            if card is not None:
                extra.append((contract.MODEL_CARD, card))
            for rel, source in [("handler.py", handler), (torchscript.name, torchscript),
                                (contract.VOCAB, vocab_copy), ("model-config.yaml", config), *extra,
                                *[(str(rel), package / rel) for rel in shipped]]:
                (sums / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, sums / rel)
            listing = ["handler.py", torchscript.name, contract.VOCAB, "model-config.yaml", *[r for r, _ in extra],
                       *map(str, shipped)]
            (staging / "config" / name / checksums.CHECKSUMS).write_text(checksums.build(sums, listing))
            # the archiver stages files in $TMPDIR/<model name>: give each build its own TMPDIR
            (staging / "tmp").mkdir(exist_ok=True)
            env = {**os.environ, "TMPDIR": str(staging / "tmp")}
            subprocess.run([archiver, "--model-name", name, "--version", VERSION,
                            "--handler", str(handler),
                            "--serialized-file", str(torchscript),
                            "--extra-files", ",".join([str(vocab_copy), str(package),
                                                       str(config.parent / checksums.CHECKSUMS),
                                                       *[str(sums / r) for r, _ in extra]]),
                            "--config-file", str(config),
                            "--export-path", str(built), "--force"],
                           check=True, env=env)
        # all archives built: move them into place together (an interrupted or failed build
        # leaves the previous ones, never a partial .mar)
        with signals_deferred():
            for name in models:
                os.replace(built / contract.archive(name), out_dir / contract.archive(name))
                written.append(out_dir / contract.archive(name))
        return written
    finally:
        with signals_deferred():  # a second SIGTERM (make forwards one) must not cut the removal short
            shutil.rmtree(staging, ignore_errors=True)


def check_archive(mar: str | Path) -> str:
    """Unpack `mar` and start the handler on it in-process with the stand-in context, as a
    TorchServe worker would (CRC-32 of every member, checksums.json, the TorchScript file's own
    checksum, vocab.json against the TorchScript vocabulary, the model config). Returns the
    model's fingerprint; raises ArtifactError naming the archive (and the file inside it)."""
    mar = Path(mar)
    if not mar.is_file():
        raise ArtifactError(f"{mar}: archive not found (run `make archive`)")
    unpacked = Path(tempfile.mkdtemp(prefix="charrnn-mar-check-"))
    try:
        try:
            with zipfile.ZipFile(mar) as archive:
                bad = archive.testzip()
                if bad is not None:
                    raise ArtifactError(f"{mar}: damaged archive: {bad} fails its CRC-32")
                archive.extractall(unpacked)  # Python drops absolute and '..' parts of member names
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            raise ArtifactError(f"{mar}: damaged archive (truncated or corrupted): {exc}") from None
        return _start_handler(mar, unpacked)
    except ArtifactError as exc:
        raise ArtifactError(str(exc).replace(f"{unpacked}/", f"{mar}!/")) from None
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def _start_handler(mar: Path, model_dir: Path) -> str:
    import torch
    import yaml

    from core.vocab import VocabError
    from serve.handler import CharRNNHandler
    from serve.standin import StandInContext

    checksums.verify(model_dir, str(mar), required=True)
    try:
        manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text(encoding="utf-8"))["model"]
        config = yaml.safe_load((model_dir / "model-config.yaml").read_text(encoding="utf-8")) or {}
        context = StandInContext(model_dir, model_yaml_config=config, model_name=manifest["modelName"],
                                 serialized_file=manifest["serializedFile"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ArtifactError(f"{mar}: unreadable manifest or model config: {exc}") from None
    handler, threads = CharRNNHandler(), torch.get_num_threads()
    try:
        handler.initialize(context)
    except ArtifactError:
        raise
    except (VocabError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{mar}: the handler refuses to start: {exc}") from None
    finally:
        torch.set_num_threads(threads)  # initialize sets the worker's thread count
    return str(handler.engine.fingerprint)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build (or --check) the TorchServe archives of the CharRNN.")
    p.add_argument("--torchscript", default=contract.default_path(contract.TORCHSCRIPT))
    p.add_argument("--vocab", default=contract.default_path(contract.VOCAB))
    p.add_argument("--greedy-graph", default=contract.default_path(contract.ONNX_GENERATE),
                   help=f"{contract.ONNX_GENERATE}, shipped in {contract.archive(contract.MODEL)} for greedy names on CPU")
    p.add_argument("--card", default=contract.default_path(contract.MODEL_CARD),
                   help="the model card, shipped in every archive (make card writes it; --card '' leaves it out)")
    p.add_argument("--out", default=contract.default_path(contract.MODEL_STORE))
    p.add_argument("--check", nargs="+", metavar="MAR", help="check these archives instead of building")
    args = p.parse_args(argv)
    exit_on_sigterm()  # SIGTERM unwinds too: the staging folder is removed, nothing half-written
    if args.check:
        failed = False
        for mar in args.check:
            try:
                print(f"ok: {mar} (fingerprint {check_archive(mar)})")
            except ArtifactError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed = True
        raise SystemExit(1 if failed else 0)
    for path in build_archives(args.torchscript, args.vocab, args.out, greedy_graph=args.greedy_graph,
                               card=args.card or None):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
