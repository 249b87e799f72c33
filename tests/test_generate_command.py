"""python -m tools.generate, the one generate command line: flags that do not apply to the
chosen backend are refused by name, and a server that is not there is one clear error. (Its
names on every backend, the server included: tests/test_serve_integration.py; its ONNX backend
without torch: tests/test_runtime.py.)"""

from __future__ import annotations

import socket

import pytest

from tools.generate import main


@pytest.mark.parametrize("argv, named", [
    (["--backend", "onnx", "--stream"], "--stream"),
    (["--backend", "eager", "--session", "Lu"], "--session"),
    (["--backend", "torchscript", "--generate-model", "x.onnx"], "--generate-model"),
    (["--backend", "server", "--model", "x.onnx"], "--model"),
    (["--backend", "server", "--device", "cuda"], "--device"),
])
def test_flags_of_another_backend_are_refused(argv, named, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and named in capsys.readouterr().err


def test_a_server_that_is_not_there_is_one_clear_error(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key_file = tmp_path / "key_file.json"
    key_file.write_text('{"inference": {"key": "k"}, "API": {"key": "a"}}')
    with pytest.raises(SystemExit) as info:
        main(["--backend", "server", "--url", f"http://127.0.0.1:{port}", "--key-file", str(key_file), "--prefix", "A"])
    assert str(info.value).startswith("error: cannot reach TorchServe at")


def test_a_missing_model_names_the_file(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--backend", "onnx", "--model", str(tmp_path / "nothing.onnx")])
    assert str(info.value) == f"error: {tmp_path / 'nothing.onnx'}: ONNX model not found"


def test_the_model_layer_parses_and_prints_only_in_its_command_modules():
    """Argument parsing and printing belong to command lines (tools.generate for generating):
    a model/ module that imports argparse or calls print is one with a `__main__` block."""
    import ast

    from tests.test_layers import project_modules

    def command_line_parts(tree: ast.Module) -> bool:
        for n in ast.walk(tree):
            if isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names):
                return True
            if isinstance(n, ast.ImportFrom) and n.module == "argparse":
                return True
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print":
                return True
        return False

    def is_command(tree: ast.Module) -> bool:
        return any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)

    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in project_modules().items()
             if name.startswith("model.")}
    assert [name for name, tree in trees.items() if command_line_parts(tree) and not is_command(tree)] == []
    assert any(command_line_parts(t) for t in trees.values())  # the check sees model.train's
