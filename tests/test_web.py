"""The browser page (make web) in a real headless Chromium: the same names as the Python runtime.

Chromium is Debian's `chromium` package, driven by Playwright pointed at that binary (Playwright
never downloads a browser here). Without it these tests skip, saying how to install it; in CI
(CI=true) they fail instead, since .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from export import parity
from runtime.generator import NameGenerator
from web.chromium import ARGS, INSTALL, chromium_binary

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# accented prefixes included: the tiny model's names have á, ã, é, ê, í, ô, ú
PREFIXES = ["", "Ma", "Jo", "Fá", "Jú", "Antô", "Maria Cl", "Olí"]
TIMEOUT_MS = 30_000


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason}: CI must run the browser tests (.ci/run installs what they need)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    binary = chromium_binary()
    if binary is None:
        unavailable(f"Chromium not installed, so the browser tests cannot run: {INSTALL}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright (a pinned dev dependency) is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=ARGS)
        yield browser
        browser.close()


def ensure_web_setup() -> None:
    """The pinned onnxruntime-web in web/node_modules (make web-setup)."""
    if (ROOT / "web" / "node_modules" / ".installed").is_file():
        return
    if shutil.which("npm") is None:
        unavailable("npm not installed: the site needs the pinned onnxruntime-web (make web-setup)")
    proc = subprocess.run(["make", "-s", "web-setup"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, f"make web-setup failed:\n{proc.stdout}\n{proc.stderr}"


def served_site(artifacts, card, folder: Path):
    """Build the site of `artifacts` and serve it from 127.0.0.1: (server, url, its NameGenerator)."""
    from web.build import build_site
    from web.serve import serve_in_thread

    ensure_web_setup()
    site = build_site(artifacts.dir, folder / "web", card=card)
    server, url = serve_in_thread(site)
    return server, url, NameGenerator(artifacts.onnx, generate_model=artifacts.dir / "charrnn_generate.onnx")


@pytest.fixture(scope="session")
def tiny_site(tiny_artifacts, tiny_card, tmp_path_factory, browser):
    """The site of the tiny model, served from 127.0.0.1: (url, its NameGenerator)."""
    server, url, gen = served_site(tiny_artifacts, tiny_card, tmp_path_factory.mktemp("site"))
    yield url, gen
    server.shutdown()


@pytest.fixture(scope="session")
def ensemble_site(tiny_ensemble, ensemble_card, tmp_path_factory, browser):
    """The site of the tiny ensemble (the same page, its artifacts): (url, its NameGenerator)."""
    server, url, gen = served_site(tiny_ensemble, ensemble_card, tmp_path_factory.mktemp("ensemble-site"))
    yield url, gen
    server.shutdown()


@pytest.fixture(params=["single", "ensemble"])
def any_site(request):
    """tiny_site, then ensemble_site: the page must serve an ensemble as it serves one model."""
    return request.getfixturevalue("tiny_site" if request.param == "single" else "ensemble_site")


class Page:
    """A page of the site whose console errors fail the test that used it."""

    def __init__(self, browser, **context):
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.set_default_timeout(TIMEOUT_MS)

    def open(self, url: str, wait_for: str | None = ""):
        self.page.goto(url)
        if wait_for is not None:
            self.wait_suggestions(wait_for)

    def wait_suggestions(self, prefix: str) -> None:
        self.page.wait_for_function(
            "p => document.getElementById('completions').dataset.prefix === p", arg=prefix)

    def type_prefix(self, prefix: str) -> None:
        """Clear the field and type `prefix` key by key, as a person would."""
        field = self.page.get_by_label("Start of a name")
        field.click()
        field.press("Control+a")
        field.press("Backspace")
        field.press_sequentially(prefix, delay=15)
        self.wait_suggestions(prefix)

    def suggestions(self) -> dict:
        return self.page.evaluate("""() => ({
            greedy: document.getElementById('greedy').value,
            completions: [...document.querySelectorAll('#completions li')].map(li => li.dataset.name),
            next: [...document.querySelectorAll('#next li')].map(li => [li.dataset.char, Number(li.dataset.p)]),
        })""")

    def samples(self, key: list) -> list[str]:
        """The sampled names once the page shows those of `key` ([prefix, num, temperature, top-k, seed])."""
        self.page.wait_for_function("k => document.getElementById('samples').dataset.key === JSON.stringify(k)",
                                    arg=key)
        return self.page.evaluate("() => [...document.querySelectorAll('#samples li')].map(li => li.dataset.name)")

    def close(self) -> list[str]:
        self.context.close()
        return self.errors


@pytest.fixture
def page(browser):
    p = Page(browser)
    yield p
    errors = p.close()
    assert not errors, f"the page logged console errors: {errors}"


def close_to(got: float, want: float) -> bool:
    """onnxruntime-web's kernels against onnxruntime's: the parity rule."""
    return parity.close(want, got)


def test_typed_prefixes_give_the_python_runtimes_suggestions(page, any_site):
    url, gen = any_site
    page.open(url)
    # what the model is, from its vocab.json: one model's cell and size, or the ensemble's members
    meta, info = gen.step.meta, page.page.locator("#model-info").inner_text()
    shape = f"{meta['num_layers']}×{meta['hidden_size']}"
    if meta["members"] > 1:
        kind = "models of mixed cells" if meta["cell"] == "mixed" else f"{meta['cell'].upper()} models"
        assert f"ensemble of {meta['members']} {kind}, state {shape} in all" in info, info
    else:
        assert f"· {meta['cell'].upper()} {shape} ·" in info, info
    for prefix in PREFIXES:
        page.type_prefix(prefix)
        shown, want = page.suggestions(), gen.suggest(prefix)
        assert shown["greedy"] == want["greedy"] == gen.generate(prefix)[0], prefix
        assert shown["completions"] == [c["name"] for c in want["completions"]], prefix
        assert [c for c, _ in shown["next"]] == [c for c, _ in want["next"]], prefix
        assert all(close_to(p, q) for (_, p), (_, q) in zip(shown["next"], want["next"])), prefix


def test_seeded_samples_equal_the_python_runtimes(page, any_site):
    url, gen = any_site
    # from the address (a shared link) ...
    for prefix, num, temperature, top_k, seed in [("Ma", 6, 0.9, 0, 7), ("Jú", 4, 1.3, 4, 123456789),
                                                  ("", 5, 0.6, 2, 4294967295), ("Antô", 3, 2.0, 0, 0)]:
        from urllib.parse import urlencode

        query = urlencode({"prefix": prefix, "num": num, "temperature": temperature, "top_k": top_k, "seed": seed})
        page.open(f"{url}?{query}", wait_for=prefix)
        assert page.samples([prefix, num, temperature, top_k, seed]) == gen.generate(
            prefix, num=num, temperature=temperature, top_k=top_k, seed=seed), query
    # ... and from the controls, with the keyboard
    page.type_prefix("Fá")
    for name, value in (("Names", "5"), ("Temperature", "1.1"), ("Top-k", "3"), ("Seed", "2024")):
        page.page.get_by_label(name, exact=True).fill(value)
    page.page.get_by_label("Seed", exact=True).press("Enter")
    assert page.samples(["Fá", 5, 1.1, 3, 2024]) == gen.generate("Fá", num=5, temperature=1.1, top_k=3, seed=2024)
    link = page.page.get_by_role("link", name="Link to these names").get_attribute("href")
    assert "prefix=F%C3%A1" in link and "seed=2024" in link and "temperature=1.1" in link


def test_an_out_of_vocabulary_character_is_named_inline(page, tiny_site):
    from playwright.sync_api import expect

    url, gen = tiny_site
    page.open(url)
    field = page.page.get_by_label("Start of a name")
    message = page.page.get_by_role("alert")
    page.type_prefix("Ma")
    assert not set("€w") & set(gen.vocab.characters)
    field.press_sequentially("€w")
    expect(message).to_contain_text("Not in this model's vocabulary: “€” (U+20AC), “w” (U+0077)")
    expect(field).to_have_attribute("aria-invalid", "true")
    field.press("Backspace")
    field.press("Backspace")
    page.wait_suggestions("Ma")
    expect(message).to_be_hidden()
    expect(field).to_have_attribute("aria-invalid", "false")
    assert page.suggestions()["greedy"] == gen.generate("Ma")[0]


def test_footer_keyboard_and_phone_width(browser, tiny_site, tiny_artifacts):
    url, gen = tiny_site
    phone = Page(browser, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        phone.open(url + "?prefix=Ma", wait_for="Ma")
        footer = phone.page.locator("footer").inner_text()
        assert gen.step.meta["fingerprint"] in footer and f"vocabulary of {len(gen.vocab)} symbols" in footer
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scrolling
        # keyboard only: Tab from the field reaches the most likely next character; Enter adds it
        field = phone.page.get_by_label("Start of a name")
        field.focus()
        first = phone.suggestions()["next"][0][0]
        phone.page.keyboard.press("Tab")
        assert phone.page.evaluate("document.activeElement.closest('#next') !== null")
        phone.page.keyboard.press("Enter")
        phone.wait_suggestions("Ma" + first)
        for label in ("Start of a name", "Names", "Temperature", "Top-k", "Seed"):
            assert phone.page.get_by_label(label, exact=True).count() == 1, label
    finally:
        errors = phone.close()
    assert not errors, errors


def test_the_site_carries_the_model_card_and_refuses_another_models(tiny_artifacts, tiny_card, tmp_path):
    """web.build copies the card beside the page (site.json names it, the page links it, web.serve
    gives it with its charset); a card of another training run, or none, fails the build and leaves
    the previous site in place."""
    import json
    import urllib.request

    from core.contract import MODEL_CARD
    from core.errors import ArtifactError
    from web.build import build_site
    from web.serve import serve_in_thread

    ensure_web_setup()
    site = build_site(tiny_artifacts.dir, tmp_path / "web", card=tiny_card)
    assert (site / MODEL_CARD).read_bytes() == tiny_card.read_bytes()
    assert json.loads((site / "site.json").read_text(encoding="utf-8"))["model_card"] == MODEL_CARD
    assert f'<a id="model-card" href="{MODEL_CARD}">' in (site / "index.html").read_text(encoding="utf-8")
    server, url = serve_in_thread(site)
    try:
        with urllib.request.urlopen(url + MODEL_CARD, timeout=10) as answer:
            assert answer.headers["Content-Type"] == "text/markdown; charset=utf-8"
            assert answer.read() == tiny_card.read_bytes()
    finally:
        server.shutdown()
    fingerprint = NameGenerator(tiny_artifacts.onnx).step.meta["fingerprint"]
    other = tmp_path / "other.md"
    other.write_text(tiny_card.read_text(encoding="utf-8").replace(fingerprint, "0123456789abcdef"), encoding="utf-8")
    for card, needle in ((other, "describes another model"), (tmp_path / "none.md", "no model card")):
        with pytest.raises(ArtifactError, match=needle):
            build_site(tiny_artifacts.dir, site, card=card)
        assert (site / MODEL_CARD).read_bytes() == tiny_card.read_bytes()


def test_the_page_links_its_model_card(page, tiny_site, tiny_card):
    from core.contract import MODEL_CARD

    url, _ = tiny_site
    page.page.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # a Markdown page has no icon link
    page.open(url)
    page.page.get_by_role("link", name="Model card").click()
    page.page.wait_for_url(url + MODEL_CARD)
    assert page.page.locator("body").inner_text().strip() == tiny_card.read_text(encoding="utf-8").strip()


def test_screenshot(page, tiny_site):
    """artifacts/web/screenshot.png, of the current artifacts' site when `make web` built one
    (then also docs/web-screenshot.png, the README's picture, and a check of its names against
    runtime.generator on those artifacts), else of the tiny model's site."""
    url, gen = tiny_site
    built = ROOT / "artifacts" / "web"
    real = (built / "site.json").is_file()
    if real:
        from web.serve import serve_in_thread

        server, url = serve_in_thread(built)
        gen = NameGenerator(built / "model" / "charrnn.onnx", generate_model=built / "model" / "charrnn_generate.onnx")
    try:
        page.page.set_viewport_size({"width": 900, "height": 1000})
        prefix = "Jo" if real else "Ma"
        page.open(f"{url}?prefix={prefix}&num=5&temperature=0.8&seed=7", wait_for=prefix)
        assert page.suggestions()["greedy"] == gen.generate(prefix)[0]
        assert page.samples([prefix, 5, 0.8, 0, 7]) == gen.generate(prefix, num=5, temperature=0.8, seed=7)
        built.mkdir(parents=True, exist_ok=True)
        shot = built / "screenshot.png"
        page.page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if real:
            shutil.copy2(shot, ROOT / "docs" / "web-screenshot.png")
    finally:
        if real:
            server.shutdown()
