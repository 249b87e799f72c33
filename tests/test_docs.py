"""The docs stay usable: a short README that opens with the set-up commands, links that lead
somewhere, and commands that exist (make targets of the Makefile, `python -m` modules of the repo).

Checks README.md and the pages directly in docs/ (docs/results/ holds pages written by commands).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`]+)`")  # may wrap onto the next line, never past a blank line
# [text](target) and ![alt](target); the target ends at whitespace or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MAKE_OPTIONS_WITH_ARGUMENT = {"-o", "-C", "-f", "-W", "-I"}
PYTHON_M = re.compile(r"(?:^|[\s/])python(?:3(?:\.\d+)?)?\s+-m\s+([A-Za-z_][\w.]*)")


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_texts(text: str) -> list[str]:
    """Fenced blocks, then inline code spans outside them."""
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    spans = [" ".join(span.split()) for span in INLINE_CODE.findall(prose) if "\n\n" not in span]
    return blocks + spans


def make_targets_mentioned(code: str) -> list[str]:
    """Targets of every `make ...` command in a piece of code: `make` alone is the default goal,
    VAR=value and options are skipped; a comment, `&&`, `;`, `|` or `)` ends a command."""
    found = []
    for line in code.splitlines():
        line = line.split("#", 1)[0]
        for command in re.split(r"&&|\|\||;|\||\)", line):
            try:
                words = shlex.split(command)
            except ValueError:
                words = command.split()
            if words and words[0] == "$":  # a shell prompt in a sample session
                words = words[1:]
            if not words or words[0] != "make":
                continue
            skip_next = False
            for word in words[1:]:
                if skip_next:
                    skip_next = False
                elif word in MAKE_OPTIONS_WITH_ARGUMENT:
                    skip_next = True
                elif word.startswith("-") or "=" in word:
                    continue
                else:
                    found.append(word)
    return found


def makefile_targets() -> set[str]:
    """Explicit targets of the Makefile (rules and .PHONY lists), not variable assignments."""
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith(("\t", "#")) or not line.strip():
            continue
        m = re.match(r"^([^:=#]+?)\s*&?::?(?!=)(.*)$", line)
        if not m:
            continue
        names, rest = m.group(1).split(), m.group(2)
        if names == [".PHONY"]:
            targets.update(rest.split())
        else:
            targets.update(n for n in names if "$" not in n)
    return targets


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        slug = github_anchor(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path: Path) -> list[tuple[Path, str]]:
    """(target file, anchor) of every link that is not a URL; an anchor-only link targets `path`."""
    links = []
    for target in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        links.append(((path.parent / file_part).resolve() if file_part else path, anchor))
    return links


# ---------------------------------------------------------------- README shape


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move details to a page in docs/")


def test_readme_opens_with_the_two_set_up_commands():
    text = README.read_text(encoding="utf-8")
    first_block = FENCE.search(text)
    assert first_block, "README.md has no fenced code block"
    before = text[: first_block.start()]
    assert not re.search(r"^##", before, re.MULTILINE), (
        "README.md: a section heading comes before the set-up commands; the title and a short "
        "intro only may precede them")
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands[:2] == ["make", "make test"], (
        f"README.md's first code block should start with `make` then `make test`, found {commands[:2]}")


# ---------------------------------------------------------------- links


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_point_to_existing_files(page):
    missing = [str(target.relative_to(ROOT)) if target.is_relative_to(ROOT) else str(target)
               for target, _ in relative_links(page) if not target.exists()]
    assert not missing, f"{page_id(page)} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_anchors_of_links_into_markdown_pages_exist(page):
    broken = [f"{target.name}#{anchor}" for target, anchor in relative_links(page)
              if anchor and target.suffix == ".md" and target.exists() and anchor not in anchors(target)]
    assert not broken, f"{page_id(page)} links to headings that do not exist: {broken}"


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_make_target_mentioned_is_defined_in_the_makefile(page):
    defined = makefile_targets()
    mentioned = {t for code in code_texts(page.read_text(encoding="utf-8")) for t in make_targets_mentioned(code)}
    unknown = sorted(mentioned - defined)
    assert not unknown, f"{page_id(page)} mentions make targets the Makefile does not define: {unknown}"


def _runnable_module(name: str) -> bool:
    """`python -m name` can start: a module, or a package with a __main__."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a parent package is missing
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return importlib.util.find_spec(f"{name}.__main__") is not None
    return True


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_python_module_command_names_a_runnable_module(page):
    modules = {m for code in code_texts(page.read_text(encoding="utf-8")) for m in PYTHON_M.findall(code)}
    missing = sorted(m for m in modules if not _runnable_module(m))
    assert not missing, f"{page_id(page)} runs `python -m` on modules that do not exist: {missing}"


# ---------------------------------------------------------------- the checkers themselves


def test_the_command_extractors_read_what_a_shell_would_run():
    code = ("$ make generate PREFIX=Ma NUM=3   # sampled\n"
            "make && make eval\nmake -o .venv/.installed train HIDDEN=64\n"
            "TOKEN=$(python3 -c 'x')  .venv/bin/python -m serve.client --prefix L\n")
    assert make_targets_mentioned(code) == ["generate", "eval", "train"]
    assert PYTHON_M.findall(code) == ["serve.client"]
    assert {"all", "test", "serve", "soak", "bench-runtime"} <= makefile_targets()
    assert "CORPUS" not in makefile_targets() and "comma" not in makefile_targets()
    assert github_anchor("Embed the model without PyTorch (Python, Node.js)") == \
        "embed-the-model-without-pytorch-python-nodejs"
