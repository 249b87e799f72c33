"""The HTTP fuzz run's requests: seeded, bounded, every class of bad input plus valid requests
whose answers are known in advance (computed in-process with the same engine).

Each request is a `Case`: what to send, the statuses that are acceptable for it, and for a valid
request the names it must get back.
"""

from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import dataclass, field

from serve.engine import Engine
from serve.validation import GenerateRequest

# (category, weight): the share of the run each class of input gets
CATEGORIES = {
    "valid greedy": 10, "valid sampled": 6, "valid streamed": 2, "valid non-ASCII / NFD prefix": 4,
    "malformed JSON": 10, "wrong types": 10, "huge numbers": 6, "deep nesting": 5,
    "control characters": 6, "out-of-vocabulary prefix": 7, "oversized body": 4,
    "wrong content type": 7, "missing or invalid token": 8, "session requests": 8,
    "wrong method or path": 4, "odd headers": 3, "valid n-best": 6, "bad n-best values": 5,
}
CLIENT_ERRORS = {400, 404, 405, 413}
FIELDS = ("prefix", "max_length", "num", "temperature", "top_k", "seed", "stream", "search")


@dataclass
class Case:
    category: str
    method: str = "POST"
    path: str = "/predictions/charrnn"
    body: bytes = b""
    headers: dict = field(default_factory=dict)  # Content-Type and the others; token set by `token`
    token: str = "inference"  # inference | management | none | wrong | raw:<header value>
    expect: frozenset = frozenset({400})
    names: list[str] | None = None  # a valid request's answer
    stream: bool = False
    session: dict | None = None  # body of a follow-up request in the same session (e.g. close)


class Generator:
    def __init__(self, engine: Engine, seed: int = 0):
        self.engine, self.rng = engine, random.Random(seed)
        self.chars = engine.vocab.characters
        self.letters = [c for c in self.chars if c.isalpha()]
        self.non_ascii = [c for c in self.chars if not c.isascii()]
        self.oov = ["€", "😀", "中", "ß", "ñ", "\u00a0", "\u200b", "Ω", "ŀ", "\ufffd", "ǅ", "ﬁ"]
        self.oov = [c for c in self.oov if c not in self.chars]

    # ------------------------------------------------------------ helpers

    def prefix(self, n_max: int = 3) -> str:
        n = self.rng.randint(0, n_max)
        first = [self.rng.choice([c for c in self.letters if c.isupper()] or self.letters)] if n else []
        return "".join(first + [self.rng.choice(self.letters) for _ in range(n - 1)])

    def valid_fields(self, prefix: str | None = None, sampled: bool = False) -> dict:
        prefix = self.prefix() if prefix is None else prefix
        body: dict = {"prefix": prefix}
        r = self.rng.random()
        if r < 0.4:
            body["num"] = self.rng.randint(1, 4)
        if r > 0.7:
            body["max_length"] = self.rng.randint(max(1, len(prefix)), 30)
        if sampled:
            body.update(temperature=round(self.rng.uniform(0.2, 2.0), 3), top_k=self.rng.randint(0, 8),
                        seed=self.rng.randint(0, 2**32 - 1))
        return body

    def expected(self, body: dict) -> list[str]:
        """The names in-process decoding gives for `body` (a streamed request keeps the greedy
        loop, so its `stream` field is part of the request)."""
        return self.engine.generate([GenerateRequest(**body)])[0]

    def valid(self, category: str, body: dict, **kw) -> Case:
        return Case(category, body=json.dumps(body, ensure_ascii=self.rng.random() < 0.5).encode(),
                    headers={"Content-Type": "application/json"}, expect=frozenset({200}),
                    names=self.expected(body), stream=bool(body.get("stream")), **kw)

    def bad(self, category: str, body: bytes, expect=frozenset({400}), **kw) -> Case:
        kw.setdefault("headers", {"Content-Type": "application/json"})
        return Case(category, body=body, expect=frozenset(expect), **kw)

    def wrong_value(self):
        r = self.rng
        return r.choice([None, True, False, "3", "", [], {}, [1, 2], {"a": 1}, 1.5, -7, 2**40, "NaN", "∞",
                         "A" * r.randint(33, 200), -0.0])

    # ------------------------------------------------------------ one case per category

    def case(self, category: str) -> Case:
        r = self.rng
        if category == "valid greedy":
            return self.valid(category, self.valid_fields())
        if category == "valid sampled":
            return self.valid(category, self.valid_fields(sampled=True))
        if category == "valid streamed":
            return self.valid(category, {**self.valid_fields(sampled=r.random() < 0.5), "stream": True})
        if category == "valid non-ASCII / NFD prefix":
            prefix = r.choice([c for c in self.non_ascii if c.isupper()] or self.non_ascii or ["A"])
            prefix += r.choice(self.non_ascii or ["a"]) if r.random() < 0.5 else ""
            sent = unicodedata.normalize("NFD", prefix) if r.random() < 0.5 else prefix
            case = self.valid(category, self.valid_fields(prefix=prefix))
            case.body = json.dumps({**json.loads(case.body), "prefix": sent}, ensure_ascii=r.random() < 0.5).encode()
            return case
        if category == "malformed JSON":
            good = json.dumps(self.valid_fields(sampled=r.random() < 0.5)).encode()
            choice = r.randrange(7)
            if choice == 0:
                body = good[: r.randint(1, len(good) - 1)]
            elif choice == 1:
                body = bytes(r.getrandbits(8) for _ in range(r.randint(1, 200)))
            elif choice == 2:
                body = good[:-1] + b",}"
            elif choice == 3:
                body = good.replace(b'"', b"'")
            elif choice == 4:
                body = r.choice([b"{", b"}", b"[]", b"null", b"true", b"42", b'"A"', b"{}{}", b"\xef\xbb\xbf{}",
                                 b'{"prefix": NaN}', b'{"temperature": Infinity}', b"{'prefix': 'A'}"])
            elif choice == 5:
                body = good.replace(b":", b"", 1)
            else:
                body = b"\xff\xfe" + good.decode().encode("utf-16-le")
            return self.bad(category, body, {400})
        if category == "wrong types":
            body = self.valid_fields()
            for key in r.sample(FIELDS, r.randint(1, 3)):
                body[key] = self.wrong_value()
            if r.random() < 0.3:
                body[r.choice(["Prefix", "names", "n", "", "prefix ", "__proto__", "\u0000"])] = 1
            # a few draws are valid after all (prefix "", seed null, temperature -0.0): 200 or 400
            return self.bad(category, json.dumps(body).encode(), {200, 400})
        if category == "huge numbers":
            key = r.choice(FIELDS[1:6])
            value = r.choice([b"1e400", b"-1e400", b"1e308", b"18446744073709551616", b"-9223372036854775809",
                              b"9" * r.randint(20, 4200), b"9" * r.randint(4301, 9000), b"1" + b"0" * 5000,
                              b"0." + b"0" * 3000 + b"1", b"1E+999999999"])
            # 0.000...1 underflows to 0.0: a valid (greedy) temperature
            ok = {200, 400} if key == "temperature" and value.startswith(b"0.") else {400}
            return self.bad(category, b'{"' + key.encode() + b'": ' + value + b"}", ok)
        if category == "deep nesting":
            depth = r.choice([r.randint(100, 2000), r.randint(2000, 8000), r.randint(9000, 16000)])
            kind = r.randrange(4)
            if kind == 0:
                body = b"[" * depth + b"]" * depth
            elif kind == 1:
                body = b'{"a":' * (depth // 5) + b"1" + b"}" * (depth // 5)
            elif kind == 2:
                body = b'{"prefix": ' + b"[" * depth + b"]" * depth + b"}"
            else:
                body = b"[" * depth
            return self.bad(category, body, {400, 413} if len(body) > 16384 else {400})
        if category == "control characters":
            ch = chr(r.choice(list(range(32)) + [127, 0x85, 0x2028, 0x2029, 0xfeff]))
            prefix = self.prefix(2) + ch + self.prefix(1)
            if r.random() < 0.5:  # escaped in JSON: valid JSON, a character outside the vocabulary
                body = json.dumps({"prefix": prefix}).encode()
            else:  # raw in the body: invalid JSON (or valid, for the non-ASCII ones)
                body = b'{"prefix": "' + prefix.encode("utf-8", "surrogatepass") + b'"}'
            return self.bad(category, body, {400})
        if category == "out-of-vocabulary prefix":
            prefix = self.prefix(2) + "".join(r.choice(self.oov) for _ in range(r.randint(1, 3)))
            if r.random() < 0.2:
                return self.bad(category, b'{"prefix": "A\\ud800"}', {400})
            if r.random() < 0.2:
                prefix = "A" * r.randint(33, 400)  # too long
            return self.bad(category, json.dumps({"prefix": prefix}, ensure_ascii=r.random() < 0.5).encode(), {400})
        if category == "oversized body":
            size = r.choice([r.randint(16385, 30000), r.randint(66000, 200000)])
            body = b'{"prefix": "' + b"A" * size + b'"}'
            return self.bad(category, body, {413})
        if category == "wrong content type":
            body = self.valid_fields()
            ctype = r.choice(["text/plain", "application/octet-stream", "", "application/json; charset=latin-1",
                              "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
                              "image/png", "application/xml"])
            if ctype == "application/x-www-form-urlencoded":
                return Case(category, body=b"prefix=A&num=2", headers={"Content-Type": ctype}, expect=frozenset({400}))
            if ctype.startswith("multipart"):
                data = (b'--xyz\r\nContent-Disposition: form-data; name="prefix"\r\n\r\nA\r\n--xyz--\r\n')
                return Case(category, body=data, headers={"Content-Type": ctype}, expect=frozenset({400}))
            case = self.valid(category, body)
            case.headers = {"Content-Type": ctype} if ctype else {}
            return case  # the handler reads the raw body whatever its declared type
        if category == "missing or invalid token":
            token = r.choice(["none", "wrong", "management", "raw:Bearer", "raw:Bearer ", "raw:bearer {key}",
                              "raw:Basic YWRtaW46YWRtaW4=", "raw:Bearer {key}{key}", "raw:{key}"])
            path = r.choice(["/predictions/charrnn", "/predictions/charrnn_session", "/ping"])
            return Case(category, path=path, method="GET" if path == "/ping" else "POST",
                        body=json.dumps(self.valid_fields()).encode(),
                        headers={"Content-Type": "application/json"}, token=token, expect=frozenset({400}))
        if category == "session requests":
            path = "/predictions/charrnn_session"
            choice = r.randrange(5)
            if choice == 0:  # a valid session, opened and closed
                return Case(category, path=path, body=json.dumps({"text": self.prefix()}).encode(),
                            headers={"Content-Type": "application/json"}, expect=frozenset({200}),
                            session={"close": True})
            if choice == 1:  # `append` alone for a session nobody opened: 404 (send `text`), or 400
                self.sid_counter = getattr(self, "sid_counter", 0) + 1
                sid = r.choice(["ts-seq-made-up-", "x" * r.randint(1, 300), "é" * 5, "../../etc/", "0"])
                sid += str(self.sid_counter)
                return Case(category, path=path, body=json.dumps({"append": self.prefix(1) or "a"}).encode(),
                            headers={"Content-Type": "application/json", "ts_request_sequence_id": sid},
                            expect=frozenset({400, 404}))
            body = r.choice([{"text": "A", "append": "b"}, {"close": "yes"}, {"text": 5}, {"top_k": 99},
                             {"prefix": "A"}, {"append": "€"}, {"text": "A" * 40}, {"close": True, "text": "A"}])
            return Case(category, path=path, body=json.dumps(body, ensure_ascii=False).encode(),
                        headers={"Content-Type": "application/json"}, expect=frozenset({400}))
        if category == "wrong method or path":
            # TorchServe answers a prediction whatever the method (GET/PUT/DELETE with a body too)
            method, path, expect = r.choice([
                ("GET", "/predictions/charrnn", {200, 405}), ("PUT", "/predictions/charrnn", {200, 405}),
                ("DELETE", "/predictions/charrnn", {200, 405}), ("POST", "/predictions/nope", {404}),
                ("POST", "/predictions/charrnn/9.9", {404}), ("POST", "/predictions/", {400, 404, 405}),
                ("POST", "/predictions/charrnn?x=" + "y" * 3000, {200, 400}), ("POST", "/models", {404, 405}),
                ("POST", "/predictions/..%2f..%2fetc", {400, 404}), ("PATCH", "/ping", {200, 405}),
            ])
            case = Case(category, method=method, path=path, body=json.dumps({"prefix": "A"}).encode(),
                        headers={"Content-Type": "application/json"}, expect=frozenset(expect))
            if 200 in expect and path.startswith("/predictions/charrnn"):  # then the right answer
                case.names = self.expected({"prefix": "A"})
            return case
        if category == "valid n-best":  # the most probable names (model.nbest), best first
            body = {"prefix": self.prefix(), "num": r.randint(2, 12)}
            if r.random() < 0.3:
                body.update(search="nbest", num=r.randint(1, 5))
            if r.random() < 0.3:
                body["max_length"] = r.randint(max(1, len(body["prefix"])), 12)
            return self.valid(category, body)
        if category == "bad n-best values":
            limits = self.engine.limits
            body = r.choice([
                {"prefix": self.prefix(), "num": r.randint(limits.max_nbest + 1, limits.max_num)},
                {"num": r.randint(limits.max_nbest + 1, limits.max_num), "search": "nbest"},
                {"search": r.choice(["beam", "NBEST", "", "n-best", "greedy ", 3, True, [], {}])},
                {"search": "nbest", "temperature": round(r.uniform(0.1, 3), 2)},
                {"search": "greedy", "temperature": round(r.uniform(0.1, 3), 2), "seed": 1},
                {"search": "nbest", "stream": True, "num": 3},
            ])
            if r.random() < 0.25:  # a session asking for too many completions
                return self.bad(category, json.dumps({"text": self.prefix(),
                                                      "completions": r.randint(limits.max_completions + 1, 99)}).encode(),
                                {400}, path="/predictions/charrnn_session")
            return self.bad(category, json.dumps(body).encode(), {400})
        if category == "odd headers":
            body = self.valid_fields()
            extra = r.choice([{"X-Long": "a" * 4000}, {"X-Latin": "caf\xe9"}, {"Accept": "image/png"},
                              {"Content-Encoding": "gzip"}, {"Expect": "100-continue"}, {"X-Empty": ""},
                              {"ts_request_sequence_id": "ts-seq-not-a-session"}])
            case = self.valid(category, body)
            case.headers.update(extra)
            case.expect = frozenset({200, 400})
            return case
        raise ValueError(category)

    def cases(self, n: int) -> list[Case]:
        names, weights = zip(*CATEGORIES.items())
        out = [self.case(c) for c in self.rng.choices(names, weights=weights, k=n)]
        covered = {c.category for c in out}
        out += [self.case(c) for c in names if c not in covered]  # every class at least once
        return out
