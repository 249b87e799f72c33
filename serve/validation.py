"""Request validation: a request body (bytes, str or an object TorchServe already parsed) into a
typed request, or a `RequestError` naming the field. Unknown fields, wrong types (a bool is not
an integer), NaN/inf, out-of-range numbers, over-long text and characters outside the
vocabulary are all refused; nothing is clipped.

`Limits` are the operator's caps (model-config.yaml `handler.limits`); `search_of` is the one
home of which search a request runs (the n-best cap is checked here, the engine routes by it).
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields

from core.noise import MAX_SEED
from core.request import DEFAULT_MAX_LENGTH
from core.vocab import Vocab, VocabError
from model import nbest


class RequestError(ValueError):
    """A refused request. `status` is the HTTP status to answer; the message names the problem
    (it may hold any character: send it in the body, never in a status phrase)."""

    def __init__(self, message: str, status: int = 400, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after  # seconds, for a Retry-After header (429)


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask for (requests over them are refused, not clipped)."""

    max_prefix: int = 32  # characters of a prefix, or of a session's whole text
    max_length: int = 64  # largest accepted max_length
    max_num: int = 64  # names per one-shot request
    max_temperature: float = 10.0
    max_candidates: int = 20  # next-character candidates per session answer
    max_body_bytes: int = 16384  # a raw body larger than this is refused with 413
    max_nbest: int = 32  # names per n-best request (temperature 0, num > 1, or search "nbest")
    max_completions: int = 10  # top completions per session answer
    max_expansions: int = nbest.DEFAULT_MAX_EXPANSIONS  # n-best bound: prefixes expanded per search
    nbest_width: int = nbest.DEFAULT_WIDTH  # frontier prefixes expanded per step call

    @classmethod
    def from_dict(cls, data: Mapping | None) -> Limits:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown limits {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class GenerateRequest:
    prefix: str = ""  # NFC-normalised, every character in the vocabulary
    max_length: int = DEFAULT_MAX_LENGTH
    num: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = all symbols
    seed: int | None = None  # None: a fresh seed per request (sampling only)
    stream: bool = False
    search: str | None = None  # "nbest" | "greedy"; None: model.nbest.choose_search decides


@dataclass(frozen=True)
class SessionRequest:
    text: str | None = None  # everything typed so far (replaces the session's text)
    append: str | None = None  # only the newly typed characters
    top_k: int = 5  # next-character candidates to return
    max_length: int = DEFAULT_MAX_LENGTH  # length cap of the greedy completion
    close: bool = False
    completions: int = 3  # the most probable whole names to add (model.nbest), 0 = none


GENERATE_FIELDS = frozenset(f.name for f in fields(GenerateRequest))
SESSION_FIELDS = frozenset(f.name for f in fields(SessionRequest))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _reject_constant(name: str):
    raise RequestError(f"body is not valid JSON: {name} is not a number (numbers must be finite)")


# made once: json.loads(..., parse_constant=...) builds a new decoder for every body
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_body(payload: object, max_bytes: int) -> dict:
    """A JSON object from raw bytes/str, or an object TorchServe already parsed."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        if len(payload) > max_bytes:
            raise RequestError(f"body is {len(payload)} bytes; the limit is {max_bytes}", 413)
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(f"body is not UTF-8 text (byte {exc.start})") from None
    if isinstance(payload, str):
        if len(payload) > max_bytes:
            raise RequestError(f"body is {len(payload)} characters; the limit is {max_bytes}", 413)
        if not payload.strip():
            payload = None
        else:
            try:
                payload = _DECODER.decode(payload)
            except json.JSONDecodeError as exc:
                raise RequestError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                   f"column {exc.colno}") from None
            except RecursionError:
                raise RequestError("body is not valid JSON: nested too deeply") from None
            except RequestError:  # NaN/Infinity, from _reject_constant
                raise
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                raise RequestError(f"body is not valid JSON: {str(exc).split(':')[0]}") from None
    if payload is None:
        raise RequestError('request body is empty: send a JSON object, e.g. {"prefix": "L"}')
    if not isinstance(payload, dict):
        raise RequestError(f"body must be a JSON object, got {_json_type(payload)}")
    return payload


def _check_fields(body: dict, allowed: frozenset) -> None:
    unknown = [k for k in body if k not in allowed]
    if unknown:
        names = ", ".join(repr(k) for k in sorted(unknown, key=str))
        raise RequestError(f"unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}")


def _int(body: dict, key: str, default, lo: int, hi: int, *, nullable: bool = False):
    if key not in body:
        return default
    value = body[key]
    if value is None and nullable:
        return None
    if type(value) is not int:  # a bool is not an integer, nor is 3.0
        raise RequestError(f"{key!r} must be an integer, got {_json_type(value)}")
    if not lo <= value <= hi:
        raise RequestError(f"{key!r} must be between {lo} and {hi}, got {value}")
    return value


def _number(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    if key not in body:
        return default
    value = body[key]
    if type(value) not in (int, float):
        raise RequestError(f"{key!r} must be a number, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"{key!r} must be a finite number, got {value}")
    if not lo <= value <= hi:
        raise RequestError(f"{key!r} must be between {lo} and {hi}, got {value}")
    return float(value)


def _bool(body: dict, key: str, default: bool) -> bool:
    if key not in body:
        return default
    value = body[key]
    if type(value) is not bool:
        raise RequestError(f"{key!r} must be true or false, got {_json_type(value)}")
    return value



def _text(body: dict, key: str, limits: Limits, vocab: Vocab) -> str:
    value = body[key]
    if type(value) is not str:
        raise RequestError(f"{key!r} must be a string, got {_json_type(value)}")
    limit = limits.max_prefix
    if len(value) > 4 * limit:  # cheap guard before normalising
        raise RequestError(f"{key!r} is {len(value)} characters long; the limit is {limit}")
    value = unicodedata.normalize("NFC", value)
    if len(value) > limit:
        raise RequestError(f"{key!r} is {len(value)} characters long; the limit is {limit}")
    try:
        vocab.encode(value)
    except VocabError as exc:
        raise RequestError(f"{key!r} has {exc}") from None
    return value


def _search(body: dict) -> str | None:
    value = body.get("search")
    if value is None:
        return None
    if value not in nbest.SEARCHES:
        raise RequestError(f"'search' must be one of {', '.join(map(repr, nbest.SEARCHES))}, got "
                           f"{_json_type(value) if not isinstance(value, str) else repr(value[:40])}")
    return value


def search_of(request: GenerateRequest) -> str:
    """"nbest", "greedy" or "sample" (model.nbest.choose_search); a conflict is a RequestError."""
    try:
        return nbest.choose_search(request.search, request.num, request.temperature, request.stream)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def parse_generate(payload: object, limits: Limits, vocab: Vocab) -> GenerateRequest:
    """A one-shot request (POST /predictions/charrnn), or RequestError."""
    body = parse_body(payload, limits.max_body_bytes)
    _check_fields(body, GENERATE_FIELDS)
    lim = limits
    prefix = _text(body, "prefix", lim, vocab) if "prefix" in body else ""
    # a default never exceeds an operator's smaller cap: the cap is the promise
    max_length = _int(body, "max_length", min(DEFAULT_MAX_LENGTH, lim.max_length), 1, lim.max_length)
    if max_length < len(prefix):
        raise RequestError(f"'max_length' ({max_length}) is shorter than the prefix "
                           f"({len(prefix)} characters)")
    request = GenerateRequest(
        prefix=prefix,
        max_length=max_length,
        num=_int(body, "num", 1, 1, lim.max_num),
        temperature=_number(body, "temperature", 0.0, 0.0, lim.max_temperature),
        top_k=_int(body, "top_k", 0, 0, len(vocab)),
        seed=_int(body, "seed", None, 0, MAX_SEED, nullable=True),
        stream=_bool(body, "stream", False),
        search=_search(body),
    )
    if search_of(request) == "nbest" and request.num > lim.max_nbest:
        raise RequestError(f"'num' must be at most {lim.max_nbest} for the n-best search (temperature 0 "
                           f"and num > 1, or search 'nbest'), got {request.num}; sample with a "
                           "temperature above 0 for more names")
    return request


def parse_session(payload: object, limits: Limits, vocab: Vocab) -> SessionRequest:
    """A session request (POST /predictions/charrnn_session), or RequestError."""
    body = parse_body(payload, limits.max_body_bytes)
    _check_fields(body, SESSION_FIELDS)
    if "text" in body and "append" in body:
        raise RequestError("send either 'text' (everything typed so far) or 'append' "
                           "(the new characters), not both")
    close = _bool(body, "close", False)
    if close and len(body) > 1:
        raise RequestError("'close' must be sent alone")
    max_candidates = min(limits.max_candidates, len(vocab))
    return SessionRequest(
        text=_text(body, "text", limits, vocab) if "text" in body else None,
        append=_text(body, "append", limits, vocab) if "append" in body else None,
        top_k=_int(body, "top_k", min(5, max_candidates), 0, max_candidates),
        max_length=_int(body, "max_length", min(DEFAULT_MAX_LENGTH, limits.max_length), 1,
                        limits.max_length),
        close=close,
        completions=_int(body, "completions", 3, 0, limits.max_completions),
    )
