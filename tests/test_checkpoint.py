import pickle

import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint


def test_checkpoint_is_plain_data_loadable_with_weights_only(tiny_artifacts):
    raw = torch.load(tiny_artifacts.checkpoint, weights_only=True)
    assert set(raw) >= {"config", "vocab", "state_dict", "metrics", "fingerprint"}
    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)
    assert model.vocab_size == len(vocab) and not model.training


def test_failed_save_leaves_the_previous_checkpoint(tiny_artifacts, tmp_path, monkeypatch):
    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, vocab)
    before = path.read_bytes()

    def explode(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, vocab)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_one_clear_error(tiny_artifacts, tmp_path, damage):
    data = tiny_artifacts.checkpoint.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 100, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=f"{bad}: not a readable checkpoint"):
        load_checkpoint(bad)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_holding_a_pickled_object_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "charrnn-checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps({"a": 1}))  # a bare pickle, not a torch zip archive
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_altered_weights_fail_the_fingerprint(tiny_artifacts, tmp_path):
    raw = torch.load(tiny_artifacts.checkpoint, weights_only=True)
    raw["state_dict"]["head.bias"] += 1.0
    torch.save(raw, tmp_path / "altered.pt")
    with pytest.raises(CheckpointError, match="fingerprint mismatch"):
        load_checkpoint(tmp_path / "altered.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
