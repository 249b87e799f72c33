"""The physical limit of decoding names with a model of a given size on a device: FLOPs and
(lower-bound) memory bytes per row and step, the device's measured peaks, and how far a measured
names/s figure is from the names/s those peaks allow. The timing helpers of the benchmarks that
set figures against it, `make gpu-check` (tools.gpu_check) and the bulk section of `make bench`
(bench.bulk); needs only torch (gpu-check runs where nothing else is installed).
"""

from __future__ import annotations

import time

import torch


def timed(work, budget: float, sync) -> float:
    """Seconds per call of work() (after one unmeasured call), over at least one call and `budget` s."""
    work()
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        work()
        sync()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return elapsed / runs


def measured_peaks(device: torch.device, seconds: float = 0.5) -> dict:
    """FP32 FLOP/s of a large matmul (TF32 off) and bytes/s of a large device copy, measured
    with the calling process's torch threads (one core where the caller set one thread)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    n = 4096 if device.type == "cuda" else 512
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    flops = 2 * n**3 / timed(lambda: a @ b, seconds, sync)
    big = torch.empty(256 * 2**20 if device.type == "cuda" else 64 * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(big)
    bytes_per_s = 2 * big.numel() / timed(lambda: dst.copy_(big), seconds, sync)
    return {"flops": flops, "bytes": bytes_per_s}


def model_cost(step, hidden_shape, vocab_size: int, sampled: bool) -> dict:
    """FLOPs and (lower-bound) memory bytes per row per decoding step: every weight matrix's
    multiply-adds (layer 0's input weights are a lookup), and the state each step must at least
    write and read back (hidden, logits, and for sampling the Gumbel noise per symbol)."""
    macs = 0
    for name, p in step.named_parameters():
        if p.dim() == 2 and "weight_ih_l0" not in name:
            macs += p.numel()
    layers, hidden = hidden_shape
    state = 4 * (2 * layers * hidden + 2 * vocab_size + (2 * vocab_size if sampled else 0))
    return {"flops": 2 * macs, "bytes": state}


def mean_steps(ids: torch.Tensor, eos_id: int) -> float:
    """Decoding steps per name of a run's ids [B, T]: each row's characters and its end token
    (T where a row reached the cap without one)."""
    chars = (ids != eos_id).cumprod(dim=1).sum(dim=1)
    return float(torch.where(chars < ids.shape[1], chars + 1, chars).double().mean())


def limit_lines(rates: dict, cost: dict, peaks: dict) -> list[str]:
    """How far each names/s figure is from the device's limit for this model size.
    rates: label -> (names/s, sampled?, decoding steps per name)."""
    lines = []
    for label, (value, sampled, steps) in rates.items():
        c = cost["sampled" if sampled else "greedy"]
        by_flops = peaks["flops"] / (c["flops"] * steps)
        by_bytes = peaks["bytes"] / (c["bytes"] * steps)
        limit = min(by_flops, by_bytes)
        lines.append(f"  {label:<28} {value:>14,.0f} names/s = {100 * value / limit:6.2f}% of the limit "
                     f"{limit:,.0f} ({'bytes' if by_bytes < by_flops else 'FLOPs'}-bound, {steps:.1f} steps a name)")
    return lines
