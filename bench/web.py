"""`make bench-web`: the page's speed in headless Chromium, next to Node.js and Python on the same model.

Two figures, each for the three runtimes in one run on one machine, one thread each
(onnxruntime-web numThreads 1, onnxruntime-node and ONNX Runtime intra-op 1):

- first suggestion: in Chromium, from navigation start to the first suggestions on screen (page,
  scripts, worker, the wasm runtime and both models fetched and compiled, one `suggest("")`);
  in Node.js and Python, from the model files' bytes in memory to the first `suggest("")`
  answered (session creation included): what a page load costs beyond the runtime itself.
- per keystroke: names from the vocabulary typed one key at a time, each key after the previous
  update is on screen; in Chromium from the input event to its suggestions on screen (the
  worker's next-character probabilities, greedy name and completions, and the DOM; the worker's
  own share is reported too), in Node.js and Python one `suggest(prefix)` (web/charrnn.mjs, runtime.generator.NameGenerator.suggest).

Usage: python -m bench.web [--art-dir artifacts] [--site artifacts/web] [--rounds 5]
writes ART/bench/web.{json,md}. Needs the built site (make web), Chromium and node-setup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from core import contract
from core.atomic import write_text_atomic
from tools.result_page import command_line, write_result_page

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("Maria Clara", "João Pedro", "Fábio", "Ana Júlia", "Luiz", "Antônio")
THREADS = "1 everywhere (onnxruntime-web numThreads 1, onnxruntime-node and ONNX Runtime intra-op 1)"


def keystroke_prefixes(characters: set[str]) -> list[str]:
    """Every prefix of the typed names, key by key (names the model cannot spell are left out)."""
    names = [n for n in NAMES if set(n) <= characters]
    return [name[:i] for name in names for i in range(1, len(name) + 1)]


def measure_browser(site: Path, prefixes: list[str], rounds: int) -> dict:
    from playwright.sync_api import sync_playwright

    from web.chromium import ARGS, INSTALL, chromium_binary
    from web.serve import serve_in_thread

    binary = chromium_binary()
    if binary is None:
        raise SystemExit(f"error: Chromium not found: {INSTALL}")
    server, url = serve_in_thread(site)
    first, keys, worker = [], [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=binary, args=ARGS)
            version = browser.version
            for _ in range(rounds):
                context = browser.new_context()
                page = context.new_page()
                page.set_default_timeout(60_000)
                wait = "p => document.getElementById('completions').dataset.prefix === p"
                page.goto(url)
                page.wait_for_function(wait, arg="")
                first.append(page.evaluate("window.charrnnTimings.firstSuggestion"))
                field = page.get_by_label("Start of a name")
                field.focus()
                before = page.evaluate("window.charrnnTimings.updates.length")
                for prefix in prefixes:
                    if len(prefix) == 1:  # a new name: clear the field first, not timed
                        page.keyboard.press("Control+a")
                        page.keyboard.press("Backspace")
                        page.wait_for_function(wait, arg="")
                        before = page.evaluate("window.charrnnTimings.updates.length")
                    page.keyboard.type(prefix[-1])
                    page.wait_for_function(wait, arg=prefix)
                    updates, inside = page.evaluate("[window.charrnnTimings.updates, window.charrnnTimings.worker]")
                    keys.append(updates[-1])
                    worker.append(inside[-1])
                    assert len(updates) == before + 1, "one update per keystroke expected"
                    before = len(updates)
                context.close()
            browser.close()
    finally:
        server.shutdown()
    return {"first_ms": first, "keystroke_ms": keys, "worker_ms": worker, "chromium": version}


def measure_node(art: Path, prefixes: list[str], rounds: int) -> dict:
    proc = subprocess.run(["node", str(ROOT / "export" / "node" / "bench.mjs"), "--model", str(art / contract.ONNX_STEP),
                           "--generate-model", str(art / contract.ONNX_GENERATE), "--rounds", str(rounds),
                           json.dumps(prefixes)], capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode:
        raise SystemExit(f"error: the Node.js bench failed (make node-setup?):\n{proc.stderr}")
    return json.loads(proc.stdout)


def measure_python(art: Path, prefixes: list[str], rounds: int) -> dict:
    from runtime.generator import NameGenerator
    from runtime.greedy import OnnxGreedy
    from runtime.step import OnnxStep

    step_bytes, graph_bytes = (art / contract.ONNX_STEP).read_bytes(), (art / contract.ONNX_GENERATE).read_bytes()
    first, keys = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        gen = NameGenerator.__new__(NameGenerator)  # from bytes, as the page and Node.js load them
        gen.step = OnnxStep.from_bytes(step_bytes, contract.ONNX_STEP)
        gen.vocab = gen.step.vocab
        gen.greedy = OnnxGreedy.from_bytes(graph_bytes, contract.ONNX_GENERATE)
        gen.suggest("")
        first.append((time.perf_counter() - started) * 1000)
        for prefix in prefixes:
            t = time.perf_counter()
            gen.suggest(prefix)
            keys.append((time.perf_counter() - t) * 1000)
    return {"first_ms": first, "keystroke_ms": keys}


def measure(art_dir: str | Path, site: str | Path, rounds: int = 5) -> dict:
    from tools.machine import machine_info

    art, site = Path(art_dir), Path(site)
    from runtime.generator import NameGenerator

    vocab = NameGenerator(art / contract.ONNX_STEP).vocab
    site_info = json.loads((site / "site.json").read_text(encoding="utf-8"))
    prefixes = keystroke_prefixes(set(vocab.characters))
    machine = machine_info()
    runs = {"python": measure_python(art, prefixes, rounds), "node": measure_node(art, prefixes, rounds),
            "chromium": measure_browser(site, prefixes, rounds)}
    return {"machine": machine, "command": command_line("bench.web"),
            "threads": THREADS, "rounds": rounds, "keystrokes": prefixes, "model": site_info,
            "versions": {"chromium": runs["chromium"]["chromium"], "node": runs["node"]["node"],
                         "onnxruntime_node": runs["node"]["onnxruntime_node"],
                         "onnxruntime_web": site_info["onnxruntime_web"], "onnxruntime": machine["onnxruntime"]},
            "runs": {k: {key: v[key] for key in ("first_ms", "keystroke_ms", "worker_ms") if key in v}
                     for k, v in runs.items()}}


def format_result(result: dict) -> str:
    from tools.machine import machine_line

    return "\n".join([f"machine: {machine_line(result['machine'])}", f"command: `{result['command']}`",
                      format_body(result)])


def format_body(result: dict) -> str:
    """The versions, the table and how to read it (the result page stamps machine and command)."""
    from tools.tables import table

    def q(values, frac):
        values = sorted(values)
        return values[min(len(values) - 1, int(frac * len(values)))]

    labels = {"chromium": "headless Chromium (onnxruntime-web, wasm, in a worker)",
              "node": "Node.js (onnxruntime-node, web/charrnn.mjs)",
              "python": "Python (onnxruntime, runtime.generator)"}
    rows = []
    base = statistics.median(result["runs"]["python"]["keystroke_ms"])
    for key in ("chromium", "node", "python"):
        r = result["runs"][key]
        med = statistics.median(r["keystroke_ms"])
        rows.append([labels[key], f"{statistics.median(r['first_ms']):,.0f} ms", f"{med:.2f} ms",
                     f"{q(r['keystroke_ms'], 0.9):.2f} ms", f"{med / base:.1f}×"])
    v, m = result["versions"], result["model"]
    return "\n".join([
        (f"versions: Chromium {v['chromium']}, Node.js {v['node']}, onnxruntime-web {v['onnxruntime_web']}, "
         f"onnxruntime-node {v['onnxruntime_node']}, onnxruntime {v['onnxruntime']}"),
        f"model: fingerprint {m['fingerprint']}, vocabulary of {m['vocab_size']} symbols; threads: {result['threads']}",
        f"{result['rounds']} rounds of {len(result['keystrokes'])} keystrokes each (names typed key by key).",
        "",
        table(["runtime", "first suggestion (median)", "per keystroke (median)", "per keystroke (p90)",
               "keystroke vs Python"], rows),
        "",
        (f"In Chromium, the worker's own share of a keystroke (suggest() in onnxruntime-web): median "
         f"{statistics.median(result['runs']['chromium']['worker_ms']):.2f} ms; the rest is messages, "
         "the DOM and waiting for the main thread."),
        "",
        ("First suggestion: Chromium from navigation start to suggestions on screen; Node.js and Python from "
         "the model bytes in memory to the first answer. Per keystroke: Chromium from the input event to the "
         "suggestions on screen; Node.js and Python one suggest(prefix) call. Wall-clock on a possibly shared "
         "machine: compare figures from one run, not across runs."),
    ])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Page speed in headless Chromium next to Node.js and Python.")
    p.add_argument("--art-dir", default=contract.ART_DIR)
    p.add_argument("--site", default=None, help="the built site (default: ART_DIR/web)")
    p.add_argument("--out-dir", default=None, help="default: ART_DIR/bench")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--page", default=None, help="also write the result page here (docs/results/bench-web.md)")
    args = p.parse_args(argv)
    art = Path(args.art_dir)
    result = measure(art, Path(args.site) if args.site else art / "web", args.rounds)
    text = format_result(result)
    print(text)
    out = Path(args.out_dir) if args.out_dir else art / "bench"
    write_text_atomic(out / "web.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    write_text_atomic(out / "web.md", "# make bench-web\n\n" + text.replace("\n", "  \n", 5) + "\n")
    print(f"wrote {out}/web.json and web.md")
    if args.page:
        write_result_page(args.page, "The page's speed: `make bench-web`", format_body(result).replace("\n", "  \n", 3),
                          machine=result["machine"], command=result["command"])
        print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
