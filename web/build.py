"""`make web`: a self-contained static site in artifacts/web/ (no CDN, no server-side code).

    artifacts/web/index.html, style.css, app.mjs, worker.mjs    the page (web/site/)
    artifacts/web/charrnn.mjs                                   the decoding module (web/charrnn.mjs)
    artifacts/web/ort/                                          onnxruntime-web's wasm build, from the pinned npm package
    artifacts/web/model/charrnn.onnx, charrnn_generate.onnx     the current export
    artifacts/web/model_card.md                                 the model card (make card), linked from the page
    artifacts/web/site.json                                     what the page loads, and the build's facts

The models are loaded with the Python runtime first (checksums, same export), and the card must
carry their fingerprint, so a damaged export or a card of another run never reaches the site; the
site is built in a temporary folder and swapped in, so a failed build leaves the previous site in
place.

Usage: python -m web.build [--art-dir artifacts] [--card ART_DIR/model_card.md] [--out artifacts/web]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

from core import contract
from core.errors import ArtifactError
from core.model_card import check_card

WEB_DIR = Path(__file__).resolve().parent
ORT_PACKAGE = WEB_DIR / "node_modules" / "onnxruntime-web"
# ort.wasm.min.mjs imports ort-wasm-simd-threaded.mjs, which fetches the .wasm, both from ort/
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "style.css", "app.mjs", "worker.mjs")
MODELS = (contract.ONNX_STEP, contract.ONNX_GENERATE)


def ort_version(package: Path = ORT_PACKAGE) -> str:
    manifest = package / "package.json"
    if not manifest.is_file():
        raise ArtifactError(f"{package}: onnxruntime-web is not installed (run `make web-setup`, "
                            "or `npm ci` in web/)")
    return json.loads(manifest.read_text(encoding="utf-8"))["version"]


def check_models(art_dir: Path) -> dict:
    """Load both models with the Python runtime (checksums, input/output names, same export)."""
    from runtime.generator import NameGenerator

    gen = NameGenerator(art_dir / MODELS[0], generate_model=art_dir / MODELS[1])
    return gen.step.meta


def build_site(art_dir: str | Path, out: str | Path, package: Path = ORT_PACKAGE, card: str | Path | None = None) -> Path:
    """The site of the export in `art_dir`, with its model card (`card`, default: the one in
    `art_dir`), in `out`."""
    art_dir, out = Path(art_dir), Path(out)
    card = Path(card) if card is not None else art_dir / contract.MODEL_CARD
    version = ort_version(package)
    meta = check_models(art_dir)
    check_card(card, meta.get("fingerprint"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in PAGE_FILES:
            shutil.copy2(WEB_DIR / "site" / name, tmp / name)
        shutil.copy2(WEB_DIR / "charrnn.mjs", tmp / "charrnn.mjs")
        (tmp / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copy2(package / "dist" / name, tmp / "ort" / name)
        if (package / "LICENSE").is_file():
            shutil.copy2(package / "LICENSE", tmp / "ort" / "LICENSE")
        (tmp / "model").mkdir()
        for name in MODELS:
            shutil.copy2(art_dir / name, tmp / "model" / name)
        shutil.copy2(card, tmp / contract.MODEL_CARD)
        site = {"model": f"model/{MODELS[0]}", "generate_model": f"model/{MODELS[1]}",
                "model_card": contract.MODEL_CARD,
                "onnxruntime_web": version, "fingerprint": meta.get("fingerprint"),
                "vocab_size": meta.get("vocab_size"),
                "built": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
        (tmp / "site.json").write_text(json.dumps(site, indent=1) + "\n", encoding="utf-8")
        tmp.chmod(0o755)
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the static page (artifacts/web/).")
    p.add_argument("--art-dir", default=contract.ART_DIR)
    p.add_argument("--card", default=None, help=f"the model card (default: ART_DIR/{contract.MODEL_CARD})")
    p.add_argument("--out", default=None, help="default: ART_DIR/web")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.art_dir) / "web"
    try:
        build_site(args.art_dir, out, card=args.card)
    except ArtifactError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {out}/ (serve it with `make web-serve`)")


if __name__ == "__main__":
    main()
