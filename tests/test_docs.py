"""The docs stay usable: a short README that opens with the set-up commands, links that lead
somewhere, commands that exist (make targets of the Makefile, `python -m` modules of the repo) and
run as written, and figures that come from the result pages the measuring commands write.

Checks README.md and the pages directly in docs/ (no measured figure copied by hand onto them);
docs/results/ holds the pages that commands write (tools.result_page), checked for their stamp and
links, and that docs/results.md lists them.

Fenced commands (test_fenced_command_runs_as_written): `make ...` runs as `make -n` (a dry run:
the target, the preset and the recipe must resolve; a real run trains or measures for minutes);
`python -m tools.generate` / `export.runtime`, the Python programs and `node ...` run for real in a
copy of the repository whose artifacts/ is the tests' tiny model; what needs a running server
(curl, serve.client, tools.generate --backend server) or trains for minutes (bench.sweep, covered by tests/test_bench.py) is skipped
with that reason, and a command of a kind not classified here fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tools.result_page import MARKER

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = ROOT / "docs" / "results"
RESULT_PAGES = sorted(RESULTS.glob("*.md"))
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


@pytest.mark.parametrize("page", PAGES + RESULT_PAGES, ids=page_id)
def test_relative_links_point_to_existing_files(page):
    missing = [str(target.relative_to(ROOT)) if target.is_relative_to(ROOT) else str(target)
               for target, _ in relative_links(page) if not target.exists()]
    assert not missing, f"{page_id(page)} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES + RESULT_PAGES, ids=page_id)
def test_anchors_of_links_into_markdown_pages_exist(page):
    broken = [f"{target.name}#{anchor}" for target, anchor in relative_links(page)
              if anchor and target.suffix == ".md" and target.exists() and anchor not in anchors(target)]
    assert not broken, f"{page_id(page)} links to headings that do not exist: {broken}"


def test_the_makefiles_comments_point_to_pages_and_headings_that_exist():
    """A Makefile comment's `docs/page.md` must exist, and its `README.md "Heading"` must be a
    heading of README.md (sections move to docs/ as the README is shortened)."""
    comments = "\n".join(line for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
                         if line.lstrip().startswith("#"))
    pages = set(re.findall(r"\b(docs/[\w./-]+\.md)", comments))
    assert pages, "the check sees no page reference"
    headings = {github_anchor(h) for h in re.findall(r'README\.md "([^"]+)"', comments)}
    missing = sorted(p for p in pages if not (ROOT / p).is_file()) + sorted(headings - anchors(README))
    assert not missing, f"the Makefile's comments point to pages or README headings that do not exist: {missing}"


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


# ---------------------------------------------------------------- a clone is self-contained

OUTSIDE = re.compile(r"\.\./shared\b")  # the folder beside a development checkout that no clone has


def test_nothing_refers_to_a_folder_beside_the_repository():
    """Code, presets, tests, the Makefile, the docs and the result pages with their records
    (docs/results/) use only what a clone holds."""
    skip = {".git", ".venv", "artifacts", "node_modules", "__pycache__"}
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if (set(parts) & skip or not path.is_file()
                or path.suffix not in {".py", ".md", ".toml", ".mjs", ".js", ".html", ".json", ".yaml", ".txt", ""}):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}" for m in OUTSIDE.finditer(text)]
    assert not found, f"these refer to the folder beside the checkout, which a clone does not have: {found}"


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


# ---------------------------------------------------------------- result pages and figures

NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
# a measured figure: a number with the unit of a timing, a rate, a ratio or a likelihood
MEASURED = re.compile(r"\d[\d,]*(?:\.\d+)?\s?(?:µs|ms\b|req/s|names/s|symbols/s|×|nats)")


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else len(text)]


def test_every_result_page_was_written_by_a_command_and_is_listed():
    assert RESULT_PAGES, "docs/results/ holds no result page"
    index = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for page in RESULT_PAGES:
        text = page.read_text(encoding="utf-8")
        assert text.startswith(MARKER + "\n# "), (
            f"{page_id(page)} does not start with tools.result_page's stamp: result pages are written by "
            "the command that measures them, not by hand")
        assert re.search(r"^Measured \d{4}-\d\d-\d\d \d\d:\d\d UTC: \d+ cores", text, re.MULTILINE), page_id(page)
        assert re.search(r"^Command: `python -m [\w.]+ ", text, re.MULTILINE), page_id(page)
        assert f"(results/{page.name})" in index, f"docs/results.md does not link {page_id(page)}"


def test_results_index_and_readme_prose_hold_no_hand_copied_figure():
    """Figures live on the generated pages; README's headline table is checked against them below."""
    index = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert not MEASURED.findall(FENCE.sub("", index)), "docs/results.md holds measured figures"
    readme = README.read_text(encoding="utf-8")
    results = section(readme, "Results")
    prose = "\n".join(line for line in results.splitlines() if not line.startswith("|"))
    assert not MEASURED.findall(prose), "README.md's Results prose holds measured figures"


# On the other pages of docs/: a number with the unit of a rate, a time, a ratio (3.3×, not 1×96
# nor 20 × NUM) or a share of time, unless its line states a target or a bound (>=, limit, up to, ...)
# or it is a contract figure listed below (a setting, not a measurement).
DOC_FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?(?:\s?(?:µs|ms\b|req/s|names/s|symbols/s|GFLOP/s|GB/s|nats|%"
                        r"|names per (?:CPU-)?second)|×(?!\w))")
STATES_A_BOUND = re.compile(r">=|<=|≥|≤|\btarget|\blimit|\bat most\b|\bup to\b")
CONTRACT_FIGURES = {("docs/web.md", "250 ms"),  # the page's pause before it refreshes the samples
                    ("docs/training.md", "1%")}  # the cosine schedule's floor (model.train COSINE_FLOOR)
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))


def hand_copied_figures(page: Path) -> list[str]:
    name, found = page_id(page) if page.is_relative_to(ROOT) else page.name, []
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if STATES_A_BOUND.search(line):
            continue
        found += [m for m in DOC_FIGURE.findall(line) if (name, m) not in CONTRACT_FIGURES]
    return found


@pytest.mark.parametrize("page", DOC_PAGES, ids=page_id)
def test_doc_pages_hold_no_hand_copied_figure(page):
    """A measured figure goes stale on a hand-written page: it lives on the result page its
    command writes (docs/results/), which the page links."""
    assert not hand_copied_figures(page), (
        f"{page_id(page)} holds measured figures {hand_copied_figures(page)}: link the result page instead "
        "(or, for a figure that is a contract, state the bound or list it in CONTRACT_FIGURES)")


def test_the_figure_finder_tells_measurements_from_bounds_and_shapes(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("One process decodes ~130,000 names per CPU-second, 2.5 µs a step, 3.3× the loop, 40% in matmuls.\n"
                    "A GRU 1×96; 20 × NUM draws; the target is >= 100,000 names/s.\n```\n99 names/s\n```\n",
                    encoding="utf-8")
    assert hand_copied_figures(page) == ["130,000 names per CPU-second", "2.5 µs", "3.3×", "40%"]


def headline_rows() -> list[tuple[str, list[Path]]]:
    """(figure cell, result pages it links) of each row of README's Results table."""
    rows = []
    for line in section(README.read_text(encoding="utf-8"), "Results").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or set(cells[0]) <= {"-", ":"} or cells[1] == "figure":
            continue
        pages = [(README.parent / t).resolve() for t in LINK.findall(line) if t.startswith("docs/results/")]
        rows.append((cells[1], pages))
    return rows


def test_readme_headline_figures_appear_on_the_result_pages_they_link():
    rows = headline_rows()
    assert len(rows) >= 3, "README.md's Results section has no headline table"
    for figure, pages in rows:
        assert pages, f"README.md headline {figure!r} links no page of docs/results/"
        text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
        numbers = NUMBER.findall(figure)
        assert numbers, f"README.md headline {figure!r} has no figure"
        for n in numbers:
            assert re.search(rf"(?<![\d.,]){re.escape(n)}(?![\d,]|\.\d)", text), (
                f"README.md's headline figure {n} ({figure!r}) is not on {[page_id(p) for p in pages]}: "
                "copy it from the page its command wrote")


MEASURING_TARGETS = {  # make target (and variables) -> the page it writes under RESULTS_DIR
    "eval": "eval-default.md", "eval PRESET=ibge": "eval-ibge.md", "eval PRESET=ibge-ensemble": "eval-ibge-ensemble.md",
    "bench-runtime": "bench-runtime.md",
    "bench-web": "bench-web.md", "sweep": "sweep.md", "soak": "soak.md", "cluster-test": "cluster-test.md",
    "gpu-check": "gpu-check.md"}


def make_dry_run(*args: str) -> str:
    out = subprocess.run(["make", "-n", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("target", MEASURING_TARGETS)
def test_measuring_targets_write_their_page_under_results_dir(target, tmp_path):
    page = MEASURING_TARGETS[target]
    for args, where in (([], "docs/results"), ([f"RESULTS_DIR={tmp_path}"], str(tmp_path))):
        assert f"--page {where}/{page}" in make_dry_run(*target.split(), *args), (
            f"make {target} {' '.join(args)} does not write {where}/{page}")


@pytest.mark.parametrize("target", ["bench", "bench-serving"])
def test_bench_targets_write_a_page_per_section_under_results_dir(target, tmp_path):
    assert f"--results-dir {tmp_path}" in make_dry_run(target, f"RESULTS_DIR={tmp_path}")


# ---------------------------------------------------------------- fenced commands run as written

SHELL_FENCES = {"bash", "sh", "shell", "console", ""}
NEEDS_SERVER = ("curl", "TOKEN=", "H=", "U=", "SID=")
RUN_MODULES = {"tools.generate", "export.runtime", "deploy.gateway"}  # quick: run against the tiny model
NEEDS_CLUSTER = {"kubectl": "needs a Kubernetes cluster (tests/test_deploy.py renders and validates the manifests)",
                 "docker": "needs a container engine (make -n image-cpu shows the commands)"}
SKIP_MODULES = {"serve.client": "needs a running TorchServe (make serve)",
                "bench.sweep": "trains for minutes; tests/test_bench.py runs it with sub-second budgets",
                "model.train": "trains for minutes; make train runs it (dry-run above), the training tests run it"}
FENCE_WITH_LANG = re.compile(r"^```([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def fenced_commands() -> list[tuple[str, str, str]]:
    """(page, kind, code): every shell command line of a fenced block (continuations joined; in an
    unlabelled block only `$ `-prompted lines, the rest being output), kind "sh"; and every fenced
    Python program, kind "python"."""
    found = []
    for page in PAGES:
        for lang, body in FENCE_WITH_LANG.findall(page.read_text(encoding="utf-8")):
            lang = lang.strip()
            if lang == "python":
                found.append((page_id(page), "python", body))
                continue
            if lang not in SHELL_FENCES:
                continue
            for line in body.replace("\\\n", " ").splitlines():
                if lang == "" and not line.startswith("$ "):
                    continue
                line = line.removeprefix("$ ").strip()
                if line and not line.startswith("#"):
                    found.append((page_id(page), "sh", line))
    return found


def command_id(item) -> str:
    page, _, code = item
    return f"{page}:{' '.join(code.split())[:60]}"


PLACEHOLDER_FILES = {"my_names.txt": "Ana\nBruno\nCarla\n"}  # what the docs call the user's own files


@pytest.fixture(scope="module")
def sandbox(tiny_artifacts, tmp_path_factory) -> Path:
    """The repository, entry by entry (symbolic links), with the tiny model as artifacts/, the
    user's own files the docs name, and `python` on PATH being this interpreter; nothing beside
    it (a user's clone has only itself)."""
    box = tmp_path_factory.mktemp("sandbox") / ROOT.name
    box.mkdir()
    for name, text in PLACEHOLDER_FILES.items():
        (box / name).write_text(text, encoding="utf-8")
    for entry in ROOT.iterdir():
        if entry.name not in ("artifacts", ".git", *PLACEHOLDER_FILES):
            (box / entry.name).symlink_to(entry)
    (box / "artifacts").symlink_to(tiny_artifacts.dir)
    (box / "bin").mkdir()
    for name in ("python", "python3"):  # a script, not a link: a venv's python finds its venv by its own path
        script = box / "bin" / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        script.chmod(0o755)
    return box


def run_in(box: Path, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{box / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(argv, check=False, cwd=box, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("item", fenced_commands(), ids=command_id)
def test_fenced_command_runs_as_written(item, sandbox):
    page, kind, code = item
    if kind == "python":
        if "serve.client" in code:
            pytest.skip("needs a running TorchServe (make serve)")
        out = run_in(sandbox, ["python", "-c", code])
        assert out.returncode == 0, f"{page}: the Python program fails:\n{out.stderr[-2000:]}"
        return
    if code.startswith(NEEDS_SERVER) or "--backend server" in code:
        pytest.skip("needs a running TorchServe (make serve)")
    if "tools/gpu_run.sh" in code:
        pytest.skip("the GPU run: tests/test_gpu_check.py runs the script here (PyTorch alone, and GPU_RUN_DRY=1)")
    words = shlex.split(code, comments=True)
    if words[0] in NEEDS_CLUSTER:
        pytest.skip(NEEDS_CLUSTER[words[0]])
    if words[0] == "make":
        out = run_in(sandbox, ["make", "-n", *words[1:]])
        assert out.returncode == 0, f"{page}: `{code}` does not resolve (make -n):\n{out.stderr[-2000:]}"
        return
    if words[0] == "node":
        if not (ROOT / "export" / "node" / "node_modules").is_dir():
            pytest.skip("needs make node-setup (tests/test_node.py runs it)")
    elif words[0].endswith(("python", "python3")) and words[1:2] == ["-m"]:
        module = words[2]
        if "--help" in words:  # any module: the options it documents must parse
            pass
        elif module in SKIP_MODULES:
            pytest.skip(SKIP_MODULES[module])
        else:
            assert module in RUN_MODULES, f"{page}: `{code}`: classify python -m {module} in tests/test_docs.py"
    else:
        pytest.fail(f"{page}: `{code}`: a kind of command tests/test_docs.py does not classify yet")
    out = run_in(sandbox, words)
    assert out.returncode == 0, f"{page}: `{code}` fails:\n{out.stderr[-2000:]}"
    assert out.stdout.strip(), f"{page}: `{code}` printed nothing"
