"""Generate names with any backend: the eager checkpoint, the TorchScript step, the ONNX step
(with the one-graph greedy model, --generate-model), or a running server.

    python -m tools.generate --backend onnx --prefix L -n 3 [--temperature 0.8 --seed 7]
    python -m tools.generate --backend server --url http://127.0.0.1:8080 --prefix L [--stream]
    python -m tools.generate --backend server --session Lu --session Luc   (one session, two requests)

Every backend answers by the server's rule (model.nbest.choose_search): temperature 0 and
-n > 1 give the n most probable names (n-best), else greedy or seeded sampling, the same names
for the same flags. `python -m export.runtime` (the ONNX backend) and `python -m serve.client`
(the server backend) are aliases of this command, kept for scripts.

A tool above the torch model (model.generate), the torch-free ONNX runtime (runtime/) and the
client (serve.client), so none of them imports another's layer; each is imported only when its
backend is asked for, so the ONNX backend runs without torch.
"""

from __future__ import annotations

import argparse
import json
import sys

from core import contract
from core.errors import ArtifactError
from core.request import DEFAULT_MAX_LENGTH
from core.vocab import VocabError
from model import nbest

BACKENDS = ("eager", "torchscript", "onnx", "server")
DEFAULT_MODELS = {"eager": contract.CHECKPOINT, "torchscript": contract.TORCHSCRIPT, "onnx": contract.ONNX_STEP}
DEFAULT_URL = "http://127.0.0.1:8080"


def load_generator(backend: str, path: str | None = None, device: str = "cpu", generate_model: str | None = None):
    """A local generator with `.vocab`, `.generate_rows(rows)`, `.nbest` and `.logprobs` for `backend`."""
    if backend in DEFAULT_MODELS:
        path = path or contract.default_path(DEFAULT_MODELS[backend])
    if backend in ("eager", "torchscript"):
        import torch

        from model.generate import TorchGenerator

        torch.set_num_threads(1)  # one name at a time: threads only add hand-off latency
        if backend == "eager":
            return TorchGenerator.from_checkpoint(path, device)
        return TorchGenerator.from_torchscript(path, device)
    if backend == "onnx":
        from runtime.generator import NameGenerator

        return NameGenerator(path, generate_model=generate_model)
    raise ValueError(f"backend must be one of {BACKENDS[:-1]} here, got {backend!r}")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The n-best options of the generate command line."""
    p.add_argument("--search", choices=nbest.SEARCHES, default=None,
                   help="default: nbest (the num most probable distinct names) when temperature is 0 "
                        "and num > 1, else greedy / sampling")
    p.add_argument("--max-expansions", type=int, default=nbest.DEFAULT_MAX_EXPANSIONS,
                   help="bound of the n-best search (prefixes expanded)")
    p.add_argument("--logprobs", action="store_true",
                   help="print each name's natural-log probability after a tab")


def print_ranked(ranked, logprobs: bool) -> None:
    """One name per line (tab, log-probability with --logprobs); an n-best list the bound cut
    short is said on stderr."""
    for names, scores, complete in ranked:
        for i, name in enumerate(names):
            print(f"{name}\t{scores[i]:.6f}" if logprobs else name)
        if not complete:
            print(f"warning: the search bound (--max-expansions) stopped the search after {len(names)} "
                  "proven names", file=sys.stderr)


def server_fields(args: argparse.Namespace) -> dict:
    """The request fields the user set (the server applies its own defaults and limits to the rest)."""
    fields = {"num": args.num, "max_length": args.max_length, "temperature": args.temperature,
              "top_k": args.top_k, "seed": args.seed, "search": args.search}
    return {k: v for k, v in fields.items() if v is not None}


def run_server(args: argparse.Namespace) -> None:
    """The server backend: one request per prefix (or the --session texts in one session)."""
    import requests

    from serve.client import Client, ClientError

    client = Client(args.url, args.key_file)
    try:
        if args.session:
            with client.session() as s:
                for text in args.session:
                    print(json.dumps(s.type(text), ensure_ascii=False), flush=True)
            return
        fields = server_fields(args)
        for prefix in args.prefix or [""]:
            if args.stream:
                for event in client.stream(prefix, **fields):
                    print(json.dumps(event, ensure_ascii=False), flush=True)
                continue
            answer = client.answer(prefix, **fields)
            print_ranked([(answer["names"], answer.get("logprobs", []), answer.get("complete", True))],
                         args.logprobs)
    except (ClientError, requests.RequestException) as exc:
        raise SystemExit(f"error: {exc}") from None


def run_local(args: argparse.Namespace) -> None:
    gen = load_generator(args.backend, args.model, args.device, args.generate_model)
    answers = nbest.ranked(gen, args.prefix or [""], num=args.num,
                           max_length=DEFAULT_MAX_LENGTH if args.max_length is None else args.max_length,
                           temperature=args.temperature or 0.0, top_k=args.top_k or 0, seed=args.seed,
                           search=args.search, max_expansions=args.max_expansions, scores=args.logprobs)
    print_ranked(answers, args.logprobs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.generate",
                                description="Generate names with the eager, TorchScript or ONNX backend, "
                                            "or ask a running server.")
    p.add_argument("--backend", choices=BACKENDS, default="eager")
    p.add_argument("--prefix", action="append", default=None, help="start of the name; repeat for several")
    p.add_argument("-n", "--num", type=int, default=1, help="names per prefix")
    p.add_argument("--max-length", type=int, default=None, help=f"default {DEFAULT_MAX_LENGTH} (a server: its own)")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=None, help="0 = every symbol (default)")
    p.add_argument("--seed", type=int, default=None)
    add_search_arguments(p)
    local = p.add_argument_group("local backends (eager, torchscript, onnx)")
    local.add_argument("--model", default=None, help="artifact path (default: the backend's file in artifacts/)")
    local.add_argument("--generate-model", default=None,
                       help=f"onnx: {contract.ONNX_GENERATE}, greedy names in one session.run per batch")
    local.add_argument("--device", default=None, help="torch backends only: cpu (default) or cuda")
    server = p.add_argument_group("server backend (TorchServe, make serve)")
    server.add_argument("--url", default=DEFAULT_URL)
    server.add_argument("--key-file", default=contract.DEFAULT_KEY_FILE)
    server.add_argument("--stream", action="store_true", help="print the server's NDJSON events as they come")
    server.add_argument("--session", action="append", default=None, metavar="TEXT",
                        help="text typed so far; repeat to send several requests in one session")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.backend != "server" and (args.stream or args.session):
        p.error("--stream and --session apply to --backend server only")
    if args.generate_model is not None and args.backend != "onnx":
        p.error("--generate-model applies to --backend onnx only")
    if args.backend == "server" and (args.model or args.device):
        p.error("--model and --device apply to the local backends only")
    args.device = args.device or "cpu"
    try:
        if args.backend == "server":
            run_server(args)
        else:
            run_local(args)
    except (ArtifactError, VocabError, ValueError) as exc:  # CheckpointError is a ValueError
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
