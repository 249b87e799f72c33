"""Command lines over every layer (they may import any of them)."""
