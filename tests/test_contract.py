"""The artifact contract (core/contract.py): its names are the public ones, spelled once in Python,
the Makefile and the JavaScript readers (which keep their own literals) agree with them, and the
one vocabulary check (core.manifest.check_same_export) says which files differ and in what."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from core import contract
from tests.test_layers import project_modules

ROOT = Path(__file__).resolve().parents[1]

# Public: extend, never rename (docs/design.md "The public contract"). Spelled out here on purpose.
PUBLIC_FILES = {"corpus.txt", "checkpoint.pt", "vocab.json", "charrnn.torchscript.pt", "charrnn.onnx",
                "charrnn_generate.onnx", "charrnn.mar", "charrnn_session.mar", "model_card.md"}
PUBLIC_FOLDERS = {"artifacts", "model_store"}  # ART_DIR and the archives' folder under it
FILES = {contract.CORPUS, contract.CHECKPOINT, *contract.EXPORTS, *contract.ARCHIVES, contract.MODEL_CARD}
# a file name of the contract, alone or at the end of a path, a .mar or .torchscript.pt suffix
# (f"{model}.mar"), or a path through one of the contract's folders ("artifacts/bench")
LITERAL = re.compile(r"(?:.*/)?(?:" + "|".join(re.escape(n) for n in sorted(PUBLIC_FILES)) + r")|.*\.mar"
                     r"|.*\.torchscript\.pt"
                     r"|(?:[\w.-]*/)*(?:" + "|".join(sorted(PUBLIC_FOLDERS)) + r")(?:/[\w.-]*)*")
IO_NAMES = {"char", "hidden", "logits", "hidden_out", "prefix", "prefix_length", "max_length", "ids", "length",
            "logprob"}


def test_the_names_are_the_public_ones():
    assert FILES == PUBLIC_FILES
    assert contract.EXPORTS == ("vocab.json", "charrnn.torchscript.pt", "charrnn.onnx", "charrnn_generate.onnx")
    assert contract.ARCHIVES == ("charrnn.mar", "charrnn_session.mar")
    assert (contract.STEP_INPUTS, contract.STEP_OUTPUTS) == (("char", "hidden"), ("logits", "hidden_out"))
    assert (contract.GENERATE_INPUTS, contract.GENERATE_OUTPUTS) == (("prefix", "prefix_length", "max_length"),
                                                                     ("ids", "length", "logprob"))
    assert {contract.ART_DIR, contract.MODEL_STORE} == PUBLIC_FOLDERS
    assert contract.TORCHSCRIPT.endswith(contract.TORCHSCRIPT_SUFFIX) and contract.TORCHSCRIPT_SUFFIX == ".torchscript.pt"
    assert {*contract.STEP_INPUTS, *contract.STEP_OUTPUTS, *contract.GENERATE_INPUTS, *contract.GENERATE_OUTPUTS} == IO_NAMES


def string_constants(path: Path, skip_dict_keys: bool = False) -> list[tuple[int, str]]:
    """The file's string constants, docstrings aside (and dict keys: JSON fields, if asked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node.body[0].value) for node in ast.walk(tree)
               if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
               and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    if skip_dict_keys:
        skipped |= {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped]


def literal_names(path: Path) -> list[tuple[int, str]]:
    """String constants (docstrings and prose aside) that spell a contract file or folder name."""
    return [(line, value) for line, value in string_constants(path) if LITERAL.fullmatch(value)]


def test_python_spells_the_file_names_only_in_core_contract():
    found = {name: literal_names(path) for name, path in project_modules().items()
             if name != "core.contract"}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert literal_names(ROOT / "core" / "contract.py")  # the guard sees the names where they are


def test_the_onnx_readers_and_writers_spell_the_graph_names_only_in_core_contract():
    """The exporters wire their graphs and the runtime feeds them by the contract's names (a
    runtime's answers may have a "prefix" field: dict keys are JSON, not graph wiring)."""
    found = {name: [(line, v) for line, v in string_constants(path, skip_dict_keys=True) if v in IO_NAMES]
             for name, path in project_modules().items() if name.split(".")[0] in ("export", "runtime")}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert [v for _, v in string_constants(ROOT / "core" / "contract.py") if v in IO_NAMES]  # the guard sees them


def test_the_makefile_agrees():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")

    def variable(name: str) -> str:
        return re.search(rf"^{name}\s*[:?]?=\s*(.+)$", text, re.MULTILINE).group(1).strip()

    assert variable("ART") == contract.ART_DIR
    assert variable("CORPUS") == f"$(ART)/{contract.CORPUS}"
    assert variable("CHECKPOINT") == f"$(ART)/{contract.CHECKPOINT}"
    assert variable("EXPORTS").split() == [f"$(ART)/{n}" for n in contract.EXPORTS]
    assert variable("MODEL_STORE") == f"$(ART)/{contract.MODEL_STORE}"
    assert variable("ARCHIVES").split() == [f"$(MODEL_STORE)/{n}" for n in contract.ARCHIVES]
    assert variable("MODEL_CARD") == f"$(ART)/{contract.MODEL_CARD}"
    # every file name the recipes spell is one of the contract's
    spelled = set(re.findall(r"\$\((?:ART|MODEL_STORE)\)/([\w.]+\.(?:pt|onnx|json|mar|txt|md))\b", text))
    assert spelled and spelled <= FILES, spelled - FILES


def test_the_javascript_readers_agree():
    web = (ROOT / "web" / "charrnn.mjs").read_text(encoding="utf-8")

    def const(name: str):
        return json.loads(re.search(rf"^const {name} = (.+?);", web, re.MULTILINE).group(1))

    assert const("VOCAB_KEY") == contract.VOCAB
    assert const("STEP_IO") == [list(contract.STEP_INPUTS), list(contract.STEP_OUTPUTS)]
    assert const("GRAPH_IO") == [list(contract.GENERATE_INPUTS), list(contract.GENERATE_OUTPUTS)]
    node = (ROOT / "export" / "node" / "generate.mjs").read_text(encoding="utf-8")
    for text in (web, node):
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("//", "*", "/*")))
        spelled = set(re.findall(r"[\"'`](?:[\w./]*/)?([\w.]+\.(?:onnx|pt|mar))[\"'`]", code))
        assert spelled and spelled <= FILES, spelled - FILES
    # the page links the model card that web.build copies beside it
    page = (ROOT / "web" / "site" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'href="([\w./-]+\.md)"', page) == [contract.MODEL_CARD]


def test_the_one_vocabulary_check_names_both_files_and_what_differs():
    from core.errors import ArtifactError
    from core.manifest import check_same_export

    ref = {"symbols": ["<s>", "a", "b"], "bos_id": 0, "eos_id": 0, "fingerprint": "f1", "hidden_size": 8}
    check_same_export(dict(ref), "x.onnx", ref, "vocab.json")  # the same export: nothing to say
    with pytest.raises(ArtifactError, match=r"^x\.onnx is not from the same export as vocab\.json .*f2 against f1"
                                            r".*different training runs; re-export"):
        check_same_export({**ref, "fingerprint": "f2"}, "x.onnx", ref, "vocab.json")
    with pytest.raises(ArtifactError, match=r"^x\.onnx lists other symbols than vocab\.json \(symbols\) .*altered"):
        check_same_export({**ref, "symbols": ["<s>", "b", "a"]}, "x.onnx", ref, "vocab.json")
    with pytest.raises(ArtifactError, match=r"^x\.onnx differs from vocab\.json \(cell, hidden_size\)"):
        check_same_export({**ref, "hidden_size": 9, "cell": "gru"}, "x.onnx", ref, "vocab.json", fix="fix it")
    # a checkpoint carries the vocabulary fields only: `keys` limits the comparison to them
    check_same_export({**ref, "hidden_size": 9}, "checkpoint.pt", ref, "vocab.json", keys=("symbols", "bos_id", "eos_id"))
