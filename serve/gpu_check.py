"""make gpu-check: run the serving engine and the handler on the GPU, check that they return
exactly the CPU's names, count host syncs in the decode loop, and print batched names/s for
batches of 1, 64 and 1024 requests.

Needs only PyTorch and the project's modules (no TorchServe, no Java): the handler runs with
the stand-in context. Without CUDA it says so and exits 0. Finishes well within 5 minutes.

Usage: python -m serve.gpu_check [--model artifacts/charrnn.torchscript.pt --vocab artifacts/vocab.json]
(without those files it scripts a randomly initialised CharRNN of the default size instead).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from serve.engine import Engine, GenerateRequest, SessionRequest
from serve.handler import CharRNNHandler
from serve.standin import StandInContext

BATCHES = (1, 64, 1024)


def stand_in_artifacts(out_dir: Path) -> tuple[Path, Path]:
    """A scripted, randomly initialised CharRNN (default size) with its vocab.json, torch only."""
    from data.vocab import Vocab
    from export import manifest
    from export.torchscript import save_torchscript
    from model.charrnn import CharRNN, ModelConfig

    vocab = Vocab.from_names(["ABCDEFGHIJKLMNOPRSTUVZ abcdefghijlmnopqrstuvxyzáãéêíóôú"])
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab))).eval()
    text = manifest.dumps(manifest.build_manifest(vocab, cell="rnn", hidden_size=model.hidden_size,
                                                  num_layers=model.num_layers, fingerprint="random-init"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    ts, vj = out_dir / "charrnn.torchscript.pt", out_dir / "vocab.json"
    save_torchscript(scripted, text, ts)  # with its content checksum, as the loader requires
    vj.write_text(text, encoding="utf-8")
    return ts, vj


def mixed_requests(engine: Engine, n: int) -> list[GenerateRequest]:
    chars = [c for c in engine.vocab.characters if c.isalpha() and c.isupper()] or engine.vocab.characters
    out = []
    for i in range(n):
        prefix = chars[i % len(chars)] if i % 3 else ""
        if i % 2:
            out.append(GenerateRequest(prefix=prefix, max_length=12 + i % 13, num=1 + i % 3))
        else:
            out.append(GenerateRequest(prefix=prefix, temperature=0.5 + (i % 5) * 0.25, top_k=i % 7,
                                       seed=i, num=1 + i % 2))
    return out


def names_per_second(engine: Engine, batch: int, sampled: bool, budget: float) -> float:
    reqs = [GenerateRequest(temperature=1.0, seed=i) if sampled else
            GenerateRequest(prefix=engine.vocab.characters[i % len(engine.vocab.characters)])
            for i in range(batch)]
    engine.generate(reqs)  # warm
    runs, start = 0, time.perf_counter()
    while True:
        engine.generate(reqs)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed > budget or (runs >= 3 and elapsed > budget / 4 and batch >= 1024):
            return runs * batch / elapsed


def count_syncs(engine: Engine, length: int = 32, batch: int = 64) -> int | None:
    """Host syncs of one decode whose rows all run `length` steps (forced prefixes)."""
    if not hasattr(torch.cuda, "set_sync_debug_mode"):
        return None
    chars = engine.vocab.characters
    prefix = "".join(chars[i % len(chars)] for i in range(length))
    reqs = [GenerateRequest(prefix=prefix[:length], max_length=length)] * batch
    engine.generate(reqs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            engine.generate(reqs)
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="artifacts/charrnn.torchscript.pt")
    p.add_argument("--vocab", default="artifacts/vocab.json")
    p.add_argument("--seconds", type=float, default=3.0, help="time budget per throughput figure")
    p.add_argument("--dry-run-on-cpu", action="store_true",
                   help="without CUDA: run every check with the CPU standing in for the GPU (tests the script)")
    args = p.parse_args(argv)
    dry = args.dry_run_on_cpu and not torch.cuda.is_available()
    target = "cpu" if dry else "cuda:0"
    if not torch.cuda.is_available() and not dry:
        print(f"gpu-check: SKIPPED: CUDA is not available here (torch {torch.__version__}, "
              f"CUDA build: {torch.version.cuda or 'none'}). Run it on a machine with a GPU.")
        return 0
    started = time.perf_counter()
    print("gpu-check DRY RUN: the CPU stands in for the GPU" if dry else
          f"gpu-check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    work = Path(tempfile.mkdtemp(prefix="charrnn-gpu-check-"))
    failures: list[str] = []
    try:
        if Path(args.model).is_file() and Path(args.vocab).is_file():
            ts, vj = work / "charrnn.torchscript.pt", work / "vocab.json"
            shutil.copy2(args.model, ts)
            shutil.copy2(args.vocab, vj)
            print(f"model: {args.model}")
        else:
            ts, vj = stand_in_artifacts(work)
            print(f"model: {args.model} not found: a randomly initialised CharRNN of the default size")
        torch.set_num_threads(max(1, torch.get_num_threads()))
        cpu = Engine.from_artifacts(ts, vj, device="cpu")
        gpu = Engine.from_artifacts(ts, vj, device=target)

        # 1. the engine: GPU names == CPU names (greedy and seeded sampling, mixed batch)
        reqs = mixed_requests(cpu, 300)
        same = cpu.generate(reqs) == gpu.generate(reqs)
        print(f"engine, mixed batch of {len(reqs)} requests: GPU names {'==' if same else '!='} CPU names")
        if not same:
            failures.append("engine names differ between GPU and CPU")

        # 1b. the n-best search (model.nbest): its step calls batch frontier prefixes on the device
        searches = [GenerateRequest(prefix=p, num=n) for p in ("", "A", "Ma", "Lu") for n in (5, 20)]
        started_nbest = time.perf_counter()
        got_nbest = gpu.answer(searches)
        nbest_s = time.perf_counter() - started_nbest
        want_nbest = cpu.answer(searches)
        same = all(a.names == b.names and all(abs(x - y) <= 1e-4 * max(1.0, abs(y)) for x, y in zip(a.logprobs, b.logprobs))
                   for a, b in zip(got_nbest, want_nbest))
        print(f"engine n-best ({len(searches)} searches, num 5 and 20, {nbest_s:.2f} s): GPU lists "
              f"{'==' if same else '!='} CPU lists")
        if not same:
            failures.append("n-best lists differ between GPU and CPU")

        # 2. sessions: the same typed text, step by step, on both devices
        words = ["Lu", "c", "as", "Mar", "ia"]
        for engine in (cpu, gpu):
            engine.session([("a", SessionRequest(text=words[0]), True), ("b", SessionRequest(), True)])
        agree = True
        for w in words[1:]:
            a = cpu.session([("a", SessionRequest(append=w), False), ("b", SessionRequest(append=w), False)])
            b = gpu.session([("a", SessionRequest(append=w), False), ("b", SessionRequest(append=w), False)])
            for x, y in zip(a, b):
                agree &= x["completion"] == y["completion"] and [c["char"] for c in x["next"]] == \
                    [c["char"] for c in y["next"]] and all(abs(c["p"] - d["p"]) < 1e-4 for c, d in zip(x["next"], y["next"]))
        print(f"engine sessions: GPU answers {'==' if agree else '!='} CPU answers")
        if not agree:
            failures.append("session answers differ between GPU and CPU")

        # 3. the handler with a stand-in context on gpu_id 0, one-shot (with streaming) and sessions
        handler = CharRNNHandler()
        ctx = StandInContext(work, gpu_id=0, model_yaml_config={"handler": {"mode": "generate"}})
        handler.initialize(ctx)
        device = handler.engine.device
        bodies = [json.dumps({"prefix": r.prefix, "max_length": r.max_length, "num": r.num,
                              "temperature": r.temperature, "top_k": r.top_k, "seed": r.seed}).encode()
                  for r in reqs[:64]] + [b'{"prefix": "\\u0000"}', b'{"prefix": "", "stream": true, "seed": 1}']
        got = ctx.run(handler, bodies)
        want = cpu.generate(reqs[:64])  # names; the log-probabilities beside them may differ in the last digits
        ok = all(r.status == 200 for r in got[:64]) and [json.loads(r.text)["names"] for r in got[:64]] == want
        ok &= got[64].status == 400 and got[65].status == 200
        ok &= json.loads(got[65].streamed.decode().splitlines()[-1])["names"] == \
            cpu.generate([GenerateRequest(seed=1, stream=True)])[0]
        print(f"handler on {device}: {'matches' if ok else 'DIFFERS FROM'} the CPU engine "
              "(64 requests + a refused one + a streamed one)")
        if not ok or (device.type != "cuda" and not dry):
            failures.append(f"handler on {device} differs from the CPU engine")

        # 4. the loop does not sync with the host every character
        syncs = None if dry else count_syncs(gpu)
        if syncs is not None:
            print(f"host syncs in one 32-step decode of 64 rows: {syncs} (per-character syncing would be >= 32)")
            if syncs >= 32:
                failures.append(f"{syncs} host syncs in a 32-step decode")

        # 5. throughput
        print("batched names/s (requests of 1 name each; greedy with a 1-letter prefix / sampled, T=1):")
        for batch in BATCHES:
            g = names_per_second(gpu, batch, False, args.seconds)
            s = names_per_second(gpu, batch, True, args.seconds)
            c = names_per_second(cpu, batch, False, args.seconds / 2)
            print(f"  batch {batch:>5}: GPU greedy {g:>10.0f}   GPU sampled {s:>10.0f}   (CPU greedy {c:>8.0f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"gpu-check took {time.perf_counter() - started:.0f} s")
    if failures:
        print("gpu-check FAILED: " + "; ".join(failures))
        return 1
    print("gpu-check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
