"""Exact simplifications of the exported step graph (charrnn.onnx), for ONNX Runtime.

On a model this small ONNX Runtime's cost is per node, not per multiply, and the dynamo exporter
leaves nodes that only reshape or that depend on `char` alone. Both rewrites keep the contract
(names, dtypes, shapes) and give the same outputs bit for bit (tests/test_generate_graph.py); the
saved charrnn.onnx is simplified (export.onnx_step) and so is the body of the one-graph loop
(export.generate_graph)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from core import contract
from export import onnx_check


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def prune(graph: onnx.GraphProto) -> None:
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
    char, hidden = contract.STEP_INPUTS
    constant = {t.name for t in graph.initializer}
    from_char = {char}
    for node in graph.node:  # topological order
        if all(i in constant or i in from_char for i in node.input if i):
            (from_char if any(i in from_char for i in node.input) else constant).update(node.output)
    rest = [n for n in graph.node if not any(o in from_char for o in n.output)]
    used_after = {i for n in rest for i in n.input} | {o.name for o in graph.output}
    frontier = sorted(t for t in from_char if t in used_after and t != char)
    if not frontier:
        return step

    probe = copy_model(step)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in frontier)
    session = onnx_check.session(probe.SerializeToString(), "the step's char-only part")
    layers, _, size = (d.dim_value for d in graph.input[1].type.tensor_type.shape.dim)

    def run(batch: int) -> list[np.ndarray]:
        return session.run(None, {char: np.arange(batch, dtype=np.int64),
                                  hidden: np.zeros((layers, batch, size), np.float32)})

    tables, ones = run(vocab_size), run(1)
    folded = copy_model(step)
    nodes = []
    for name, table, one in zip(frontier, tables, ones):
        axes = [a for a, (n, m) in enumerate(zip(table.shape, one.shape)) if n != m]
        if (table.ndim != one.ndim or len(axes) != 1 or table.shape[axes[0]] != vocab_size
                or not np.array_equal(np.take(table, [0], axis=axes[0]), one)):
            return step
        folded.graph.initializer.append(numpy_helper.from_array(table, f"{name}.table"))
        nodes.append(helper.make_node("Gather", [f"{name}.table", char], [name], axis=axes[0]))
    nodes += rest
    del folded.graph.node[:]
    folded.graph.node.extend(nodes)
    prune(folded.graph)
    return folded


def drop_squeeze_pairs(step: onnx.ModelProto) -> onnx.ModelProto:
    """Bypass Unsqueeze(Squeeze(x, axes), axes) and Squeeze(Unsqueeze(x, axes), axes), both x:
    the exporter leaves such pairs around the recurrent state of every layer."""
    step = copy_model(step)
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
    prune(graph)
    return step


def simplify_step(step: onnx.ModelProto, vocab_size: int) -> onnx.ModelProto:
    """Both rewrites: the char-only part as lookup tables, then no Squeeze/Unsqueeze round trips."""
    return drop_squeeze_pairs(tabulate_char_inputs(step, vocab_size))
