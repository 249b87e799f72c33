"""The CharRNN, its training loop, checkpoint format and decoding."""
