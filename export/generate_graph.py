"""charrnn_generate.onnx: the whole greedy decoding loop in one ONNX graph (torch-free).

Built from the exported step model (charrnn.onnx), not from the weights: the step graph becomes
the body of an ONNX `Loop`, so RNN, GRU and multi-layer models work alike, and one `session.run`
decodes a whole batch of names. ONNX Runtime's cost on a model this small is per node, and the
Loop pays it every character, so the inlined step is simplified (export.simplify) and rewritten
for the loop (_Body: 9 nodes per character for the default RNN after ORT's own fusions, 17
before). Every rewrite is exact; export checks the result against the step loop (verify) and
writes nothing on a mismatch.

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
           logprob        float32 [batch]            log p(name): model.nbest's definition (natural
                                                     log of each character's probability, then of
                                                     the end token, even after a name cut at
                                                     max_length; the end token excluded at t = 0),
                                                     to float32 rounding: the log-softmax runs in
                                                     float32, the sum in float64
  metadata_props "vocab.json": the same JSON as charrnn.onnx's (symbols, bos_id, eos_id, ...);
                 "charrnn.sha256": the content checksum, the file's last entry (core.integrity).

The greedy rule is model.decode's: input bos_id first; at step t the name's character t is the
prefix's when t < prefix_length, else the argmax of the logits (first index on ties), with the
end token masked at t = 0 (a name has at least one character); a row stops at eos_id or at
max_length characters.

The log-probability costs no node per character: the loop emits each step's logits as a scan
output, and after the loop one log-softmax and gather score every step of every row at once. A
name cut at max_length still needs the end token's probability after its last character, so the
loop may run one step more than max_length (that step forces the end token; `ids` never shows
it).

CLI: python -m export.generate_graph --step artifacts/charrnn.onnx --out artifacts/charrnn_generate.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core import contract, integrity, manifest
from core.atomic import write_bytes_atomic
from core.errors import ArtifactError
from core.vocab import VocabError
from export import onnx_check
from export.simplify import simplify_step
from export.tolerance import ATOL, RTOL, allowed

INPUTS, OUTPUTS = contract.GENERATE_INPUTS, contract.GENERATE_OUTPUTS
STEP = "step/"  # prefix of every name inlined from the step graph


def _const(name: str, value, dtype) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=dtype), name))


# A forced prefix character's logit gets FORCE added, so it wins the argmax whatever the model
# scores; finite, so no inf - inf. Every other entry of a bias row is 0, so the logits the argmax
# compares are the step model's, bit for bit.
FORCE = 1e30


def _attr(node: onnx.NodeProto, name: str, default):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


class _Body:
    """The inlined step, rewritten as the Loop body.

    ONNX Runtime's cost on this model is per node, and the Loop pays it every character, so
    exact rewrites cut the nodes per character:
    - the char lookups (tabulate_char_inputs) move to the end of the step and index the chosen
      token: the loop carries the looked-up rows, not the character;
    - each layer's state is carried as its own [batch, size] tensor instead of being sliced out
      of, and stacked back into, [layers, batch, size] (an ensemble's: each member's layers, no
      Split and Concat of the members' slices);
    - one Add of row t of a table built once per run (`bias_t`) forces prefix characters and
      masks the end token on step 0: no per-step Less/Where.
    Where a pattern is not there the step is kept as it is (carry `char` or the whole `hidden`),
    so any step graph works, with more nodes. Per step the body emits the token, `alive` before
    and after it (1 until the row's end token, then 0) and the step's own logits (what the
    log-probability after the loop is computed from: one more output costs a copy, not a node)."""

    def __init__(self, step: onnx.ModelProto, layers: int, size: int):
        graph = onnx.compose.add_prefix_graph(step.graph, STEP)
        self.constants = {t.name: t for t in graph.initializer}
        producer = {o: n for n in graph.node for o in n.output}
        char, hidden, logits, hidden_out = (STEP + n for n in (*contract.STEP_INPUTS, *contract.STEP_OUTPUTS))
        nodes = list(graph.node)
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.initial: list[tuple[str, str]] = []  # per carried value: (how to start it, its table or width)
        head_nodes = [helper.make_node("Gather", ["ctable", "t"], ["bias_t"], axis=1)]
        tail: list[onnx.NodeProto] = []

        # the head as exported; the argmax compares its logits plus bias_t (0, or forcing and masking)
        tail.append(helper.make_node("Add", [logits, "bias_t"], ["scores"]))
        scores = "scores"
        tail.append(helper.make_node("ArgMax", [scores], ["token"], axis=1, keepdims=0))

        # the input: carry what Gather(table, char) looked up, or else char itself
        lookups = [n for n in nodes if n.op_type == "Gather" and n.input[1] == char
                   and n.input[0] in self.constants and _attr(n, "axis", 0) == 0]
        if any(char in n.input for n in nodes if n not in lookups):
            lookups = []
        for n in lookups:
            nodes.remove(n)
            table, rows = n.input[0], n.output[0]
            self._carry(rows, rows + ".next", TensorProto.FLOAT, ["batch", self.constants[table].dims[1]], ("rows", table))
            tail.append(helper.make_node("Gather", [table, "token"], [rows + ".next"], axis=0))
        if not lookups:
            self._carry(char, "token", TensorProto.INT64, ["batch"], ("bos", ""))

        # the state: one carried tensor per layer (per member and layer for an ensemble) when the
        # step slices and restacks it
        state = self._state_pattern(nodes, producer, hidden, hidden_out, layers, size, _widths(step))
        if state:
            removed, carried = state
            for n in removed:
                nodes.remove(n)
            for name_in, name_out, width in carried:
                self._carry(name_in, name_out, TensorProto.FLOAT, ["batch", width], ("zeros", str(width)))
        else:
            self._carry(hidden, hidden_out, TensorProto.FLOAT, [layers, "batch", size], ("zeros_stacked", ""))
        self._carry("alive", "alive_out", TensorProto.INT64, ["batch"], ("one", ""))
        self.nodes = head_nodes + nodes + tail

    def _carry(self, name_in: str, name_out: str, dtype: int, shape: list, initial: tuple[str, str]) -> None:
        self.inputs.append(helper.make_tensor_value_info(name_in, dtype, shape))
        self.outputs.append(helper.make_tensor_value_info(name_out, dtype, shape))
        self.initial.append(initial)

    def _state_pattern(self, nodes, producer, hidden: str, hidden_out: str, layers: int, size: int,
                       widths: dict[str, int]):
        """(the nodes to drop, [(carried input, its next value, width)]) when the state is read and
        written per layer: `_layer_pattern` on the whole state (a single model), or on each part
        of a Split of `hidden` along the units whose new states a Concat along the units joins in
        the same order and widths (an ensemble: each member's slice). None otherwise."""
        readers = [n for n in nodes if hidden in n.input]
        if len(readers) == 1 and readers[0].op_type == "Split":
            split, top = readers[0], producer.get(hidden_out)
            if (split.input[0] != hidden or _attr(split, "axis", 0) not in (2, -1) or len(split.input) != 2
                    or split.input[1] not in self.constants or top is None or top.op_type != "Concat"
                    or _attr(top, "axis", None) not in (2, -1) or len(top.input) != len(split.output)):
                return None
            parts = numpy_helper.to_array(self.constants[split.input[1]]).reshape(-1).tolist()
            if sum(parts) != size:
                return None
            pieces = list(zip(split.output, top.input, parts))
            dropped = [split, top]
        else:
            pieces, dropped = [(hidden, hidden_out, size)], []
        carried = []
        for part, part_out, width in pieces:
            found = self._layer_pattern(nodes, producer, part, part_out, layers, exempt=dropped)
            if not found:
                return None
            selects, stacking, outs = found
            if dropped and any(widths.get(out) != width for out in outs):
                return None  # a member's new state must fill the slice it was read from
            dropped += selects + stacking
            carried += [(sel.output[0], out, width) for sel, out in zip(selects, outs)]
        return dropped, carried

    def _layer_pattern(self, nodes, producer, hidden: str, hidden_out: str, layers: int, exempt=()):
        """(the Gather of each layer, the nodes that restack, each layer's new state) when `hidden`
        is only read as Gather(hidden, k) and `hidden_out` is Unsqueeze or Concat of Unsqueezes
        (read by nothing else than the `exempt` nodes, which go too)."""
        index = {}
        for n in (n for n in nodes if hidden in n.input):
            if not (n.op_type == "Gather" and n.input[0] == hidden and _attr(n, "axis", 0) == 0
                    and n.input[1] in self.constants):
                return None
            k = numpy_helper.to_array(self.constants[n.input[1]])
            if k.ndim != 0 or int(k) in index:
                return None
            index[int(k)] = n
        if sorted(index) != list(range(layers)):
            return None
        top = producer.get(hidden_out)
        if layers == 1:
            unsqueezes = [top]
        elif top is not None and top.op_type == "Concat" and _attr(top, "axis", None) == 0:
            unsqueezes = [producer.get(i) for i in top.input]
        else:
            return None
        if len(unsqueezes) != layers or any(
                u is None or u.op_type != "Unsqueeze" or len(u.input) != 2 or u.input[1] not in self.constants
                or numpy_helper.to_array(self.constants[u.input[1]]).reshape(-1).tolist() != [0] for u in unsqueezes):
            return None
        stacking = unsqueezes + ([top] if layers > 1 else [])
        if any(s.output[0] in n.input for s in stacking for n in nodes if n not in stacking and n not in exempt):
            return None
        return [index[k] for k in range(layers)], stacking, [u.input[0] for u in unsqueezes]

    def graph(self, eos: int) -> onnx.GraphProto:
        nodes = list(self.nodes)
        distance = "token"  # alive is Min(alive, distance): needs 0 for the end token, >= 1 otherwise
        if eos != 0:
            nodes += [helper.make_node("Sub", ["token", "eos_value"], ["token_rel"]),
                      helper.make_node("Abs", ["token_rel"], ["token_distance"])]
            distance = "token_distance"
        nodes += [helper.make_node("Min", ["alive", distance], ["alive_out"]),
                  helper.make_node("ReduceMax", ["alive_out"], ["alive_any"], keepdims=0),
                  helper.make_node("Cast", ["alive_any"], ["cond_out"], to=TensorProto.BOOL)]
        used = {i for n in nodes for i in n.input}
        outer = self.outer_tables()
        return helper.make_graph(
            nodes, "greedy_step",
            inputs=[helper.make_tensor_value_info("t", TensorProto.INT64, []),
                    helper.make_tensor_value_info("cond", TensorProto.BOOL, []), *self.inputs],
            # the scan outputs repeat carried values: ONNX allows a graph output twice, and an
            # Identity would cost a node per character
            outputs=[helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), *self.outputs,
                     helper.make_tensor_value_info("token", TensorProto.INT64, ["batch"]),
                     helper.make_tensor_value_info("alive_out", TensorProto.INT64, ["batch"]),
                     helper.make_tensor_value_info(STEP + contract.STEP_OUTPUTS[0], TensorProto.FLOAT, ["batch", None]),
                     helper.make_tensor_value_info("alive", TensorProto.INT64, ["batch"])],
            initializer=[t for name, t in self.constants.items() if name in used and name not in outer],
        )

    def outer_tables(self) -> set[str]:
        """Lookup tables the outer graph needs too (for the first step's rows)."""
        return {table for how, table in self.initial if how == "rows"}


def _widths(step: onnx.ModelProto) -> dict[str, int]:
    """The last dimension of every 2-d tensor of the step whose shape inference knows it (the
    names prefixed as the body's)."""
    graph = onnx.shape_inference.infer_shapes(step).graph
    out = {}
    for info in [*graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            out[STEP + info.name] = dims[1].dim_value
    return out


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
    if names_in != contract.STEP_INPUTS or names_out != contract.STEP_OUTPUTS:
        raise ArtifactError(f"step model has inputs {names_in} and outputs {names_out}, "
                            f"expected {contract.STEP_INPUTS} and {contract.STEP_OUTPUTS}")
    bos, eos, layers, size, symbols = vocab.bos_id, vocab.eos_id, meta["num_layers"], meta["hidden_size"], len(vocab)
    body = _Body(simplify_step(step, symbols), layers, size)

    # bias_table row i < V: force symbol i; row V: nothing; row V + 1: the end token masked
    # (step 0 without a prefix character: a name has at least one character)
    bias_table = np.zeros((symbols + 2, symbols), np.float32)
    bias_table[np.arange(symbols), np.arange(symbols)] = FORCE
    bias_table[symbols + 1, eos] = -np.inf

    initial, inits = [], [numpy_helper.from_array(bias_table, "bias_table")]
    for i, (how, table) in enumerate(body.initial):
        if how == "rows":  # the rows of bos as [1, width]: the Gemm that reads them broadcasts
            row = numpy_helper.to_array(body.constants[table])[bos : bos + 1]
            inits.append(numpy_helper.from_array(row, f"{table}.bos"))
            initial.append(f"{table}.bos")
        elif how == "zeros":  # one per width: a member's (or the model's) units
            initial.append(f"zeros_init_{table}")
        else:
            initial.append({"bos": "bos_init", "zeros_stacked": "stacked_init", "one": "alive_init"}[how])
    prefix, prefix_length, max_length = INPUTS  # the graph's wiring reads the contract's names
    ids, length, logprob = OUTPUTS
    first_mask = np.zeros((1, 1, symbols), np.float32)  # step 0's scores exclude the end token
    first_mask[..., eos] = -np.inf
    inits.append(numpy_helper.from_array(first_mask, "first_mask"))
    nodes = [
        _const("eos_value", eos, np.int64),
        _const("zero", 0, np.int64),
        _const("one", 1, np.int64),
        _const("zero_1d", [0], np.int64),
        _const("one_1d", [1], np.int64),
        _const("two_1d", [2], np.int64),
        _const("zeros_3", [0, 0, 0], np.int64),
        _const("no_force", symbols, np.int64),
        _const("first_fallback", symbols + 1, np.int64),
        _const("bos_1d", [bos], np.int64),
        _const("cond_init", True, np.bool_),
        _const("size_1d", [size], np.int64),
        _const("layers_1d", [layers], np.int64),
        _const("zero_f32", 0.0, np.float32),
        helper.make_node("Shape", [prefix_length], ["batch_dim"]),
        # the loop's steps: max_length characters, and one more that forces the end token, so a
        # name cut at max_length gets the end token's probability too (it stops earlier when
        # every name has ended)
        helper.make_node("Add", [max_length, "one"], ["cap"]),
        # ctable [batch, cap, V]: each row's bias row for each step
        helper.make_node("Reshape", [max_length, "one_1d"], ["max_1d"]),
        helper.make_node("Reshape", ["cap", "one_1d"], ["cap_1d"]),
        helper.make_node("Concat", ["zeros_3", "cap_1d"], ["pads"], axis=0),
        helper.make_node("Pad", [prefix, "pads", "no_force"], ["padded"]),  # prefix_len may be 0
        helper.make_node("Slice", ["padded", "zero_1d", "cap_1d", "one_1d"], ["wanted"]),
        helper.make_node("Range", ["zero", "cap", "one"], ["pos"]),
        helper.make_node("Unsqueeze", [prefix_length, "one_1d"], ["prefix_length_col"]),
        helper.make_node("Less", ["pos", "prefix_length_col"], ["in_prefix"]),
        helper.make_node("Min", ["pos", "one"], ["after_first"]),
        helper.make_node("Sub", ["first_fallback", "after_first"], ["unforced"]),  # V + 1 on step 0, then V
        helper.make_node("Equal", ["pos", max_length], ["past_cap"]),
        helper.make_node("Where", ["past_cap", "eos_value", "unforced"], ["fallback"]),  # row eos forces it
        helper.make_node("Where", ["in_prefix", "wanted", "fallback"], ["bias_index"]),
        helper.make_node("Gather", ["bias_table", "bias_index"], ["ctable"], axis=0),
    ]
    for width in sorted({int(table) for how, table in body.initial if how == "zeros"}):
        nodes += [_const(f"size_1d_{width}", [width], np.int64),
                  helper.make_node("Concat", ["batch_dim", f"size_1d_{width}"], [f"state_shape_{width}"], axis=0),
                  helper.make_node("ConstantOfShape", [f"state_shape_{width}"], [f"zeros_init_{width}"],
                                   value=numpy_helper.from_array(np.zeros(1, np.float32)))]
    if "stacked_init" in initial:
        nodes += [helper.make_node("Concat", ["layers_1d", "batch_dim", "size_1d"], ["stacked_shape"], axis=0),
                  helper.make_node("ConstantOfShape", ["stacked_shape"], ["stacked_init"],
                                   value=numpy_helper.from_array(np.zeros(1, np.float32)))]
    if "bos_init" in initial:
        nodes.append(helper.make_node("Expand", ["bos_1d", "batch_dim"], ["bos_init"]))
    # alive is emitted per step (before each step): [batch] from the first step on
    nodes.append(helper.make_node("Expand", ["one_1d", "batch_dim"], ["alive_init"]))
    finals = [f"final_{i}" for i in range(len(initial))]
    if eos == 0:  # alive is 0 or 1: the ids after a row's end become eos_id by a product
        masking = [helper.make_node("Mul", ["steps", "alive_steps"], ["masked_steps"])]
    else:
        masking = [helper.make_node("Sub", ["steps", "eos_value"], ["steps_rel"]),
                   helper.make_node("Mul", ["steps_rel", "alive_steps"], ["masked_rel"]),
                   helper.make_node("Add", ["masked_rel", "eos_value"], ["masked_steps"])]
    loop_body = body.graph(eos)
    nodes += [
        helper.make_node("Loop", ["cap", "cond_init", *initial],
                         [*finals, "steps", "alive_steps", "step_logits", "alive_before"], body=loop_body),
        *masking,
        # the forced end token's step, when it ran, is not part of the names
        helper.make_node("Slice", ["masked_steps", "zero_1d", "max_1d", "zero_1d"], ["shown_steps"]),
        helper.make_node("Transpose", ["shown_steps"], [ids], perm=[1, 0]),
        helper.make_node("ReduceSum", ["alive_steps", "zero_1d"], [length], keepdims=0),
        # log p(name), model.nbest's definition: the log-softmax of every step's logits (the end
        # token excluded at step 0), the chosen symbol's entry, summed over the steps a row was
        # alive before (its characters, then its end token); the sum in float64
        helper.make_node("Slice", ["step_logits", "zero_1d", "one_1d", "zero_1d"], ["first_logits"]),
        helper.make_node("Add", ["first_logits", "first_mask"], ["first_masked"]),
        helper.make_node("Slice", ["step_logits", "one_1d", "cap_1d", "zero_1d"], ["later_logits"]),
        helper.make_node("Concat", ["first_masked", "later_logits"], ["scored_logits"], axis=0),
        helper.make_node("LogSoftmax", ["scored_logits"], ["log_probs"], axis=-1),
        helper.make_node("Unsqueeze", ["steps", "two_1d"], ["chosen"]),
        helper.make_node("GatherElements", ["log_probs", "chosen"], ["chosen_log_probs"], axis=2),
        helper.make_node("Squeeze", ["chosen_log_probs", "two_1d"], ["step_log_probs"]),
        helper.make_node("Cast", ["alive_before"], ["counted"], to=TensorProto.BOOL),
        helper.make_node("Where", ["counted", "step_log_probs", "zero_f32"], ["counted_log_probs"]),
        helper.make_node("Cast", ["counted_log_probs"], ["counted64"], to=TensorProto.DOUBLE),
        helper.make_node("ReduceSum", ["counted64", "zero_1d"], ["logprob64"], keepdims=0),
        helper.make_node("Cast", ["logprob64"], [logprob], to=TensorProto.FLOAT),
    ]
    # constants this variant does not read would make ONNX Runtime warn at every load
    used = {i for n in [*nodes, *loop_body.node] for i in n.input}
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]
    graph = helper.make_graph(
        nodes, "charrnn_generate",
        inputs=[helper.make_tensor_value_info(name, TensorProto.INT64, shape)
                for name, shape in zip(INPUTS, (["batch", "prefix_len"], ["batch"], []))],
        outputs=[helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "steps"]),
                 helper.make_tensor_value_info(length, TensorProto.INT64, ["batch"]),
                 helper.make_tensor_value_info(logprob, TensorProto.FLOAT, ["batch"])],
        initializer=inits + [body.constants[t] for t in sorted(body.outer_tables())],
    )
    model = helper.make_model(graph, opset_imports=list(step.opset_import), ir_version=step.ir_version,
                              producer_name="charrnn", doc_string="CharRNN greedy decoding loop: "
                              "(prefix, prefix_length, max_length) -> (ids, length, logprob)")
    helper.set_model_props(model, {manifest.VOCAB_KEY: props[manifest.VOCAB_KEY]})
    onnx.checker.check_model(model, full_check=True)
    return model


def verify(generate_data: bytes, step_data: bytes, source: str, stepper=None, reference: str = "the ONNX step") -> int:
    """Compare the one-graph loop with the ONNX step loop (model.decode_numpy, the loop the
    runtime decodes with) on every first letter, the empty prefix, batches of mixed prefixes and
    a short length cap: the names exactly, and each name's `logprob` with model.nbest.score over
    `stepper` (export's pipeline passes the eager model's; default: the ONNX step's) to
    export.tolerance's rule, the magnitude being the name's summed step-logit scale (each term
    of the sum is a log-softmax, whose float32 rounding grows with the largest |logit| of its
    step). Returns the number of names compared; raises export.parity.ExportMismatch
    (ArtifactError without torch) on any difference."""
    from core.request import Row
    from model.decode_numpy import decode, decode_greedy_graph_scored
    from model.nbest import NumpyStepper

    step_source = source + " (step)"
    props = {p.key: p.value for p in onnx.load_from_string(step_data).metadata_props}
    integrity.check_onnx(step_data, step_source, props)
    try:
        vocab, meta = manifest.parse(props.get(manifest.VOCAB_KEY, ""), step_source)
    except VocabError as exc:
        raise ArtifactError(str(exc)) from None
    step = onnx_check.step(step_data, step_source)
    graph = onnx_check.greedy_graph(generate_data, source)
    hidden_shape = (meta["num_layers"], meta["hidden_size"])
    scorer = ScaledScorer(stepper if stepper is not None else NumpyStepper(step, hidden_shape))

    def names_of(rows):
        return decode(step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=hidden_shape)

    letters = [Row(())] + [Row((vocab.encode(c)[0],)) for c in vocab.characters]
    named = names_of(letters)
    # real-looking prefixes of 0..3 characters, mixed in one batch, some with a short cap
    mixed = [Row(tuple(ids[: k]), max_length=max(k, 1) + (i % 3) * 4)
             for i, ids in enumerate(named) for k in (0, 1, 2, 3) if k <= len(ids)]
    batches = [letters, mixed, letters[:1], letters[-1:], [Row(r.prefix, max_length=3) for r in letters]]
    compared = 0
    for rows in batches:
        want, (got, logprobs) = names_of(rows), decode_greedy_graph_scored(graph, rows, eos_id=vocab.eos_id)
        if want != got:
            bad = next(i for i, (w, g) in enumerate(zip(want, got)) if w != g)
            raise _mismatch(f"one-graph ONNX export {source}: row {bad} (prefix {rows[bad].prefix}) "
                            f"gives {got[bad]}, the step loop {want[bad]}; not written")
        expected, scale = scorer.score(want, vocab.bos_id, vocab.eos_id)
        for i, (g, w, m) in enumerate(zip(logprobs, expected, scale)):
            if not abs(g - w) <= allowed(m):  # NaN fails too
                raise _mismatch(f"one-graph ONNX export {source}: logprob of row {i} ({vocab.decode(want[i])!r}) "
                                f"is {g:.7g}, {reference}'s {w:.7g}: |difference| {abs(g - w):.3g} > tolerance "
                                f"{allowed(m):.3g} = {ATOL:g} + {RTOL:g} x {m:.3g} (its summed step-logit scale); "
                                "not written")
        compared += len(rows)
    return compared


class ScaledScorer:
    """model.nbest.score over a stepper, with each name's magnitude for the tolerance: the sum,
    over the positions the score counts, of that step's largest |logit|."""

    def __init__(self, stepper):
        self.stepper, self.largest = stepper, []

    def zeros(self, batch: int):
        return self.stepper.zeros(batch)

    def run(self, tokens, state):
        logits, state = self.stepper.run(tokens, state)
        self.largest.append(np.abs(np.asarray(logits, dtype=np.float64)).max(axis=1))
        return logits, state

    def score(self, names, bos_id: int, eos_id: int) -> tuple[list[float], list[float]]:
        from model.nbest import score

        self.largest = []
        values = score(self, names, bos_id=bos_id, eos_id=eos_id)
        scales = [float(sum(self.largest[t][i] for t in range(len(n) + 1))) for i, n in enumerate(names)]
        return values, scales


def _mismatch(message: str) -> Exception:
    try:  # the exports' error type; it lives beside torch, so only on failure
        from export.parity import ExportMismatch
    except ImportError:  # building without torch installed
        return ArtifactError(message)
    return ExportMismatch(message)


def export_generate(step_path: str | Path, path: str | Path, stepper=None, reference: str = "the ONNX step") -> int:
    """Build charrnn_generate.onnx from the step at `step_path`, verify it against the step loop
    (names) and `stepper`'s log-probabilities (`verify`), and write `path` only if every name
    agrees. Returns the number of names compared."""
    step_data = Path(step_path).read_bytes()
    data = integrity.seal_onnx(build_generate_model(onnx.load_from_string(step_data)).SerializeToString())
    compared = verify(data, step_data, str(path), stepper, reference)
    write_bytes_atomic(path, data)
    return compared


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the one-graph greedy decoder from charrnn.onnx.")
    p.add_argument("--step", default=contract.default_path(contract.ONNX_STEP))
    p.add_argument("--out", default=contract.default_path(contract.ONNX_GENERATE))
    args = p.parse_args(argv)
    try:
        compared = export_generate(args.step, args.out)
    except (ArtifactError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out} ({compared} names equal the step loop's, log-probabilities its scores)")


if __name__ == "__main__":
    main()
