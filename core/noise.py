"""Counter-based random numbers for sampling, identical on numpy and torch, CPU and GPU (torch-free).

Sampling draws Gumbel noise from a hash of (row seed, step, symbol) instead of a stateful
generator, so a name depends only on its own seed and the model: batching requests together, or
running on another backend or device, does not change its noise bits (its float noise and logits
may round differently: docs/numerics.md).

Every function uses only integer operators, so it works on Python ints, numpy int64 arrays and
torch int64 tensors alike. Values stay below 2**63, so int64 never overflows.
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF
MAX_SEED = 2**32 - 1
# decoding steps of noise a sampler draws at once (model.choose for a few rows, the captured chunks, the numpy twin):
# one set of hashing calls per chunk instead of per step; the values do not depend on it
NOISE_CHUNK = 8


def mix32(x):
    """A 32-bit integer finaliser (multipliers kept below 2**31 so products fit in int64).

    The first line makes a new array (never the caller's); the rest update it in place, which on
    numpy and torch saves an allocation and a pass over memory per operator (a sampling batch's
    noise is rows x symbols of these); on Python ints the augmented operators just rebind."""
    x = x & MASK32
    x ^= x >> 16
    x *= 0x7FEB352D
    x &= MASK32
    x ^= x >> 15
    x *= 0x5BD1E995
    x &= MASK32
    x ^= x >> 16
    return x


def row_seed(seed: int, index: int) -> int:
    """Seed of the `index`-th name of a request seeded with `seed` (0 <= seed < 2**32)."""
    return int(row_seeds(seed, index))


def row_seeds(seed, index):
    """row_seed for an int64 array/tensor of indices (0 <= index < 2**31) at once: a million
    names' seeds without a Python loop over them (model.batch, bulk generation)."""
    return mix32(seed ^ mix32(index * 0x9E3779B1 + 0x632BE5AB))


def uniform_bits(row_seeds, step, symbols):
    """24 random bits per (row, symbol) for decoding step `step`.

    row_seeds: int64 [batch, 1]; step: int; symbols: int64 [1, vocab] (0..vocab-1).
    Returns int64 [batch, vocab] in [0, 2**24): exactly representable in float32.
    """
    return seeded_bits(mix32(row_seeds), step, symbols)


def seeded_bits(seed_hash, step, symbols):
    """uniform_bits from the rows' hashed seeds (`mix32(row_seeds)`, fixed for a whole decode);
    `step` may also be an array of steps that broadcasts against the rows and symbols."""
    return mix32(seed_hash ^ mix32(symbols + step * 65536 + 1)) >> 8


def seeded_bits32(seed_hash, step_hash):
    """seeded_bits on int32 arrays (numpy or torch), with the same values: seed_hash is
    mix32(row seeds) [batch, 1] and step_hash is mix32(symbols + step * 65536 + 1) [.., vocab],
    each 32-bit value held as an int32 of the same bits. A sampling step hashes rows x symbols
    values, and int32 moves half the bytes of int64 through each of the ~15 passes.

    The same arithmetic modulo 2**32: int32 products wrap (that is the `& MASK32` after each
    int64 product), and each arithmetic right shift is masked to the logical shift it stands for.
    Returns int32 in [0, 2**24)."""
    x = seed_hash ^ step_hash
    for shift, multiplier in ((16, 0x7FEB352D), (15, 0x5BD1E995), (16, None)):
        low = x >> shift
        low &= MASK32 >> shift
        x ^= low
        if multiplier is not None:
            x *= multiplier
    x >>= 8
    x &= 0xFFFFFF
    return x


def to_unit_interval(bits24):
    """Map 24 random bits to the open interval (0, 1); `bits24` is a float array/tensor.
    (Scaling in place: the same values as `(bits24 + 0.5) * 2**-24`, one temporary fewer.)"""
    u = bits24 + 0.5
    u *= 1.0 / 16777216.0
    return u
