import pytest

from core.vocab import BOUNDARY, Vocab, VocabError


def test_boundary_token_never_clashes_with_characters():
    # the original notebook's b/ and /e collided with real 'b', '/', 'e'
    vocab = Vocab.from_names(["b/", "/e", "<s>", "abe"])
    assert vocab.symbols[vocab.bos_id] == BOUNDARY
    ids = vocab.encode("<s>b/e")
    assert vocab.bos_id not in ids and vocab.eos_id not in ids
    assert vocab.decode(ids) == "<s>b/e"


def test_encode_names_every_unknown_character():
    vocab = Vocab.from_names(["Ana"])
    with pytest.raises(VocabError, match=r"'x' \(U\+0078\), 'z' \(U\+007A\)"):
        vocab.encode("Anaxz")


def test_decode_stops_at_end_token():
    vocab = Vocab.from_names(["Ana"])
    assert vocab.decode([*vocab.encode("An"), vocab.eos_id, *vocab.encode("a")]) == "An"


def test_dict_round_trip_and_validation():
    vocab = Vocab.from_names(["João", "Ana"])
    assert Vocab.from_dict(vocab.to_dict()) == vocab
    for bad in ([], {"symbols": "abc", "bos_id": 0, "eos_id": 0}, {"symbols": ["<s>", "a", "a"], "bos_id": 0, "eos_id": 0},
                {"symbols": ["a", "b"], "bos_id": 0, "eos_id": 0}, {"symbols": ["<s>", "ab"], "bos_id": 0, "eos_id": 0}):
        with pytest.raises(VocabError):
            Vocab.from_dict(bad)
