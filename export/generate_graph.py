"""charrnn_generate.onnx: the whole greedy decoding loop in one ONNX graph (torch-free).

Built from the exported step model (charrnn.onnx), not from the weights: the step graph becomes
the body of an ONNX `Loop`, so RNN, GRU and multi-layer models work alike, and one `session.run`
decodes a whole batch of names. Before inlining, two exact simplifications cut the nodes ONNX
Runtime runs per character (its cost on a tiny model is per node): the part of the step that
depends on `char` alone becomes a lookup table, and Squeeze/Unsqueeze round trips are dropped.
Export checks the result against the step loop (verify) and writes nothing on a mismatch.

Contract (extend, never rename):
  inputs   prefix         int64 [batch, prefix_len]  prefix ids; pad short rows with anything
                                                     (eos_id); prefix_len may be 0
           prefix_length  int64 [batch]              real length of each row's prefix
           max_length     int64 []                   length cap in characters, prefix included;
                                                     >= 1 and >= every prefix_length
  outputs  ids            int64 [batch, steps]       the names' symbol ids, prefix included, then
                                                     eos_id; steps <= max_length (the loop stops
                                                     when every name has ended)
           length         int64 [batch]              characters per name (ids before the eos_id)
  metadata_props "vocab.json": the same JSON as charrnn.onnx's (symbols, bos_id, eos_id, ...);
                 "charrnn.sha256": the content checksum, the file's last entry (export.integrity).

The greedy rule is model.decode's: input bos_id first; at step t the name's character t is the
prefix's when t < prefix_length, else the argmax of the logits (first index on ties), with the
end token masked at t = 0 (a name has at least one character); a row stops at eos_id or at
max_length characters.

CLI: python -m export.generate_graph --step artifacts/charrnn.onnx --out artifacts/charrnn_generate.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from data.atomic import write_bytes_atomic
from data.vocab import VocabError
from export import integrity, manifest
from export.errors import ArtifactError
from export.runtime import session_options

INPUTS = ("prefix", "prefix_length", "max_length")
OUTPUTS = ("ids", "length")
STEP = "step/"  # prefix of every name inlined from the step graph


def _const(name: str, value, dtype) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype), name))


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes, initializers and value_info that no graph output needs (in place)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def tabulate_char_inputs(step: onnx.ModelProto, vocab_size: int) -> onnx.ModelProto:
    """The step with every tensor that depends on `char` alone (the one-hot input projection of
    the first layer, for any cell) replaced by a lookup table: evaluate that part of the graph
    once for all `vocab_size` symbols and index the results with Gather(table, char).

    Same values (a one-hot product sums exact zeros, in any order), but about ten fewer nodes per
    step: on a tiny model ONNX Runtime's cost is per node, and the Loop pays it every character.
    Returns the step unchanged when some such tensor has no single batch axis."""
    graph = step.graph
    constant = {t.name for t in graph.initializer}
    from_char = {"char"}
    for node in graph.node:  # topological order
        if all(i in constant or i in from_char for i in node.input if i):
            (from_char if any(i in from_char for i in node.input) else constant).update(node.output)
    rest = [n for n in graph.node if not any(o in from_char for o in n.output)]
    used_after = {i for n in rest for i in n.input} | {o.name for o in graph.output}
    frontier = sorted(t for t in from_char if t in used_after and t != "char")
    if not frontier:
        return step

    probe = _copy(step)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in frontier)
    session = ort.InferenceSession(probe.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    layers, _, size = (d.dim_value for d in graph.input[1].type.tensor_type.shape.dim)

    def run(batch: int) -> list[np.ndarray]:
        return session.run(None, {"char": np.arange(batch, dtype=np.int64),
                                  "hidden": np.zeros((layers, batch, size), np.float32)})

    tables, ones = run(vocab_size), run(1)
    folded = _copy(step)
    nodes = []
    for name, table, one in zip(frontier, tables, ones):
        axes = [a for a, (n, m) in enumerate(zip(table.shape, one.shape)) if n != m]
        if (table.ndim != one.ndim or len(axes) != 1 or table.shape[axes[0]] != vocab_size
                or not np.array_equal(np.take(table, [0], axis=axes[0]), one)):
            return step
        folded.graph.initializer.append(numpy_helper.from_array(table, f"{name}.table"))
        nodes.append(helper.make_node("Gather", [f"{name}.table", "char"], [name], axis=axes[0]))
    nodes += rest
    del folded.graph.node[:]
    folded.graph.node.extend(nodes)
    _prune(folded.graph)
    return folded


def drop_squeeze_pairs(step: onnx.ModelProto) -> onnx.ModelProto:
    """Bypass Unsqueeze(Squeeze(x, axes), axes) and Squeeze(Unsqueeze(x, axes), axes), both x:
    the exporter leaves such pairs around the recurrent state of every layer."""
    step = _copy(step)
    graph = step.graph
    axes = {t.name: numpy_helper.to_array(t).tolist() for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    inverse = {"Squeeze": "Unsqueeze", "Unsqueeze": "Squeeze"}
    alias: dict[str, str] = {}
    for node in graph.node:
        src = producer.get(node.input[0]) if node.op_type in inverse else None
        if (src is not None and src.op_type == inverse[node.op_type] and len(node.input) == len(src.input) == 2
                and node.input[1] in axes and axes[node.input[1]] == axes.get(src.input[1])):
            alias[node.output[0]] = alias.get(src.input[0], src.input[0])
    for node in graph.node:
        node.input[:] = [alias.get(i, i) for i in node.input]
    keep = {i.name for i in graph.input} | {o.name for o in graph.output} | axes.keys()
    for out in sorted(keep & alias.keys()):  # the output takes over the name of what it aliases
        src = alias[out]
        if src in keep:
            continue
        keep.add(src)
        nodes = [n for n in graph.node if out not in n.output]
        for n in nodes:
            n.input[:] = [out if i == src else i for i in n.input]
            n.output[:] = [out if o == src else o for o in n.output]
        del graph.node[:]
        graph.node.extend(nodes)
    _prune(graph)
    return step


def build_generate_model(step: onnx.ModelProto) -> onnx.ModelProto:
    """The greedy loop around `step` (a loaded charrnn.onnx), with its vocab.json metadata."""
    props = {p.key: p.value for p in step.metadata_props}
    if manifest.VOCAB_KEY not in props:
        raise ArtifactError(f"step model has no {manifest.VOCAB_KEY!r} metadata")
    try:
        vocab, meta = manifest.parse(props[manifest.VOCAB_KEY], "step model")
    except VocabError as exc:
        raise ArtifactError(str(exc)) from None
    names_in = tuple(i.name for i in step.graph.input)
    names_out = tuple(o.name for o in step.graph.output)
    if names_in != ("char", "hidden") or names_out != ("logits", "hidden_out"):
        raise ArtifactError(f"step model has inputs {names_in} and outputs {names_out}, "
                            "expected ('char', 'hidden') and ('logits', 'hidden_out')")
    bos, eos, layers, size = vocab.bos_id, vocab.eos_id, meta["num_layers"], meta["hidden_size"]

    # ---- the loop body: (t, cond, char, hidden, bias, done) -> (cond, char, hidden, bias, done; token) ----
    simple = drop_squeeze_pairs(tabulate_char_inputs(step, len(vocab)))
    inlined = onnx.compose.add_prefix_graph(simple.graph, STEP)
    char, hidden, logits, hidden_out = (STEP + n for n in ("char", "hidden", "logits", "hidden_out"))
    step_inputs = {i.name: i for i in inlined.input}
    body_nodes = list(inlined.node) + [
        # `bias` is -inf at the end token on the first step (a name has at least one character),
        # then zero: a loop-carried row, cheaper than testing t == 0 on every step
        helper.make_node("Add", [logits, "bias"], ["masked"]),
        helper.make_node("Identity", ["zero_bias"], ["bias_out"]),
        helper.make_node("ArgMax", ["masked"], ["chosen"], axis=1, keepdims=0),
        # inside the prefix the character is forced
        helper.make_node("Gather", ["prefix_padded", "t"], ["forced"], axis=1),
        helper.make_node("Less", ["t", "prefix_length"], ["in_prefix"]),
        helper.make_node("Where", ["in_prefix", "forced", "chosen"], ["picked"]),
        # rows that ended emit the end token (what they feed back no longer matters)
        helper.make_node("Where", ["done", "eos_value", "picked"], ["token"]),
        helper.make_node("Equal", ["token", "eos_value"], ["done_out"]),
        helper.make_node("Cast", ["done_out"], ["done_int"], to=TensorProto.INT32),
        helper.make_node("ReduceMin", ["done_int"], ["all_done"], keepdims=0),
        helper.make_node("Equal", ["all_done", "zero_i32"], ["cond_out"]),
    ]
    body = helper.make_graph(
        body_nodes, "greedy_step",
        inputs=[helper.make_tensor_value_info("t", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                step_inputs[char], step_inputs[hidden],
                helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, len(vocab)]),
                helper.make_tensor_value_info("done", TensorProto.BOOL, ["batch"])],
        outputs=[helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("picked", TensorProto.INT64, ["batch"]),
                 helper.make_tensor_value_info(hidden_out, TensorProto.FLOAT, [layers, "batch", size]),
                 helper.make_tensor_value_info("bias_out", TensorProto.FLOAT, [1, len(vocab)]),
                 helper.make_tensor_value_info("done_out", TensorProto.BOOL, ["batch"]),
                 helper.make_tensor_value_info("token", TensorProto.INT64, ["batch"])],
        initializer=list(inlined.initializer),
        value_info=list(inlined.value_info),
    )

    # ---- the outer graph: initial state, the Loop, the ids as [batch, steps], lengths ----
    first_bias = np.where(np.arange(len(vocab)) == eos, -np.inf, 0.0).astype(np.float32)[None, :]
    nodes = [
        _const("eos_value", eos, np.int64),
        _const("zero_i32", 0, np.int32),
        _const("zero_bias", np.zeros_like(first_bias), np.float32),
        _const("first_bias", first_bias, np.float32),
        _const("one_1d", [1], np.int64),
        _const("eos_2d", [[eos]], np.int64),
        _const("bos_1d", [bos], np.int64),
        _const("cond_init", True, np.bool_),
        _const("layers_dim", [layers], np.int64),
        _const("size_dim", [size], np.int64),
        helper.make_node("Shape", ["prefix_length"], ["batch_dim"]),
        # pad the prefix with max_length columns: Gather(prefix_padded, t) stays in range
        helper.make_node("Reshape", ["max_length", "one_1d"], ["max_1d"]),
        helper.make_node("Concat", ["batch_dim", "max_1d"], ["pad_shape"], axis=0),
        helper.make_node("Expand", ["eos_2d", "pad_shape"], ["pad"]),
        helper.make_node("Concat", ["prefix", "pad"], ["prefix_padded"], axis=1),
        helper.make_node("Expand", ["bos_1d", "batch_dim"], ["token_init"]),
        helper.make_node("Concat", ["layers_dim", "batch_dim", "size_dim"], ["hidden_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["hidden_shape"], ["hidden_init"],
                         value=numpy_helper.from_array(np.zeros(1, np.float32))),
        helper.make_node("ConstantOfShape", ["batch_dim"], ["done_init"],
                         value=numpy_helper.from_array(np.zeros(1, np.bool_))),
        helper.make_node("Loop", ["max_length", "cond_init", "token_init", "hidden_init", "first_bias", "done_init"],
                         ["char_last", "hidden_last", "bias_last", "done_last", "steps"], body=body),
        helper.make_node("Transpose", ["steps"], ["ids"], perm=[1, 0]),
        helper.make_node("Equal", ["ids", "eos_value"], ["is_end"]),
        helper.make_node("Not", ["is_end"], ["is_char"]),
        helper.make_node("Cast", ["is_char"], ["is_char_i64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["is_char_i64", "one_1d"], ["length"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "charrnn_generate",
        inputs=[helper.make_tensor_value_info("prefix", TensorProto.INT64, ["batch", "prefix_len"]),
                helper.make_tensor_value_info("prefix_length", TensorProto.INT64, ["batch"]),
                helper.make_tensor_value_info("max_length", TensorProto.INT64, [])],
        outputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "steps"]),
                 helper.make_tensor_value_info("length", TensorProto.INT64, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=list(step.opset_import), ir_version=step.ir_version,
                              producer_name="charrnn", doc_string="CharRNN greedy decoding loop: "
                              "(prefix, prefix_length, max_length) -> (ids, length)")
    helper.set_model_props(model, {manifest.VOCAB_KEY: props[manifest.VOCAB_KEY]})
    onnx.checker.check_model(model, full_check=True)
    return model


def verify(generate_data: bytes, step_data: bytes, source: str) -> int:
    """Compare the one-graph loop with the ONNX step loop (export.runtime.decode) on every first
    letter, the empty prefix, batches of mixed prefixes and a short length cap. Returns the
    number of names compared; raises export.parity.ExportMismatch (ArtifactError without torch)
    on any difference."""
    from export.runtime import OnnxGreedy, OnnxStep, decode
    from model.request import Row

    step = OnnxStep.from_bytes(step_data, source + " (step)")
    greedy = OnnxGreedy.from_bytes(generate_data, source)
    vocab = step.vocab

    def reference(rows):
        return decode(step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=step.hidden_shape)

    letters = [Row(())] + [Row((vocab.encode(c)[0],)) for c in vocab.characters]
    named = reference(letters)
    # real-looking prefixes of 0..3 characters, mixed in one batch, some with a short cap
    mixed = [Row(tuple(ids[: k]), max_length=max(k, 1) + (i % 3) * 4)
             for i, ids in enumerate(named) for k in (0, 1, 2, 3) if k <= len(ids)]
    batches = [letters, mixed, letters[:1], letters[-1:], [Row(r.prefix, max_length=3) for r in letters]]
    compared = 0
    for rows in batches:
        want, got = reference(rows), greedy.decode(rows)
        if want != got:
            bad = next(i for i, (w, g) in enumerate(zip(want, got)) if w != g)
            try:  # the exports' error type; it lives beside torch, so only on failure
                from export.parity import ExportMismatch as Mismatch
            except ImportError:  # building without torch installed
                Mismatch = ArtifactError
            raise Mismatch(f"one-graph ONNX export {source}: row {bad} (prefix {rows[bad].prefix}) "
                           f"gives {got[bad]}, the step loop {want[bad]}; not written")
        compared += len(rows)
    return compared


def export_generate(step_path: str | Path, path: str | Path) -> int:
    """Build charrnn_generate.onnx from the step at `step_path`, verify it against the step loop,
    and write `path` only if every name agrees. Returns the number of names compared."""
    step_data = Path(step_path).read_bytes()
    data = integrity.seal_onnx(build_generate_model(onnx.load_from_string(step_data)).SerializeToString())
    compared = verify(data, step_data, str(path))
    write_bytes_atomic(path, data)
    return compared


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the one-graph greedy decoder from charrnn.onnx.")
    p.add_argument("--step", default="artifacts/charrnn.onnx")
    p.add_argument("--out", default="artifacts/charrnn_generate.onnx")
    args = p.parse_args(argv)
    try:
        compared = export_generate(args.step, args.out)
    except (ArtifactError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out} ({compared} names equal the step loop's)")


if __name__ == "__main__":
    main()
