"""A plain reference for the torch decoding loop, for tests only: every row at every step, one
step at a time, noise hashed on int64 with core.noise's generic functions, torch.argmax, no
gathering, chunking, buckets or shortcuts. model.chunked must give exactly its ids."""

from __future__ import annotations

import torch

from core.noise import mix32, seeded_bits, to_unit_interval


@torch.inference_mode()
def reference_decode(step, rows, *, bos_id, eos_id, hidden_shape, start=None, on_step=None):
    """Each row's ids (prefix included, end token excluded), as model.decode.decode promises."""
    batch = len(rows)
    steps = max(r.max_length for r in rows)
    if start is None:
        token = torch.full((batch,), bos_id, dtype=torch.long)
        hidden = torch.zeros(hidden_shape[0], batch, hidden_shape[1])
        first_position = torch.ones(batch, dtype=torch.bool)
    else:
        token, hidden, first_position = start.token, start.hidden, start.name_length == 0
    temperature = torch.tensor([float(r.temperature) for r in rows])
    seed_hash = mix32(torch.tensor([r.seed for r in rows], dtype=torch.long)).unsqueeze(1)
    done = torch.zeros(batch, dtype=torch.bool)
    out = []
    for t in range(steps):
        logits, hidden = step(token, hidden)
        vocab = logits.shape[1]
        if t == 0:
            logits = logits.masked_fill(first_position.unsqueeze(1) & (torch.arange(vocab) == eos_id), float("-inf"))
        scaled = logits / temperature.clamp_min(1e-6).unsqueeze(1)
        for i, r in enumerate(rows):
            if 0 < r.top_k < vocab:
                kth = scaled[i].sort(descending=True).values[r.top_k - 1]
                scaled[i] = scaled[i].masked_fill(scaled[i] < kth, float("-inf"))
        bits = seeded_bits(seed_hash, t, torch.arange(vocab).unsqueeze(0))
        noise = torch.log(-torch.log(to_unit_interval(bits.to(torch.float32))))
        token = torch.where(temperature == 0, logits.argmax(dim=1), (scaled - noise).argmax(dim=1))
        for i, r in enumerate(rows):
            if t < len(r.prefix):
                token[i] = r.prefix[t]
        token = token.masked_fill(done, eos_id)
        out.append(token)
        if on_step is not None:
            on_step(t, token, ~done & (token != eos_id))
        done = done | (token == eos_id) | (torch.tensor([r.max_length for r in rows]) <= t + 1)
        if bool(done.all()):
            break
    ids = torch.stack(out, dim=1).tolist()
    return [(row[: row.index(eos_id)] if eos_id in row else row)[: r.max_length] for row, r in zip(ids, rows)]
