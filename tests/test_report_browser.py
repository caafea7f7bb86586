"""The HTML report of ``icm bench``, opened in a real headless browser (Debian's Chromium).

A page can be valid text and still be broken where it counts: an image that does not decode, a
link to a file that is not there, a script error. Here the report of a small bench (three
photos, JPEG and WebP, the fake block machine) is loaded in Chromium through Playwright and must
show every image it references, with no failed request and no console error. The same check is
then run on reports broken on purpose, so a check that cannot fail would be caught too.

Needs ``pip install playwright`` (no ``playwright install``: the browser is Debian's, from
``apt-get install chromium``); skipped when either is absent.
"""

from __future__ import annotations

import base64
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import fake_machines  # noqa: F401  (registers fake:*)
from bench_helpers import small_config
from icm.bench import run_bench
from icm.bench.report import ReportPaths, write_report

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As root, in a container, offline: no sandbox, no GPU, and none of Chromium's own traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOAD_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium for the module, on a fresh empty profile."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def report(photo_folder: Path, tmp_path: Path) -> ReportPaths:
    run_dir = tmp_path / "run"
    run_bench(small_config(photo_folder, run_dir))
    return write_report(run_dir, anchor="jpeg")


class _ImageSources(HTMLParser):
    """The ``src`` of every ``<img>`` in a page's source."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str | None] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src"))


def _sources(page: str) -> list[str | None]:
    parser = _ImageSources()
    parser.feed(page)
    parser.close()
    return parser.sources


def _problems(context, html_file: Path) -> list[str]:
    """Everything wrong with the page as Chromium shows it; empty for a sound page."""
    problems: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {_short(r.url)} {r.failure}"))
    page.on(
        "response",
        lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {_short(r.url)}"),
    )
    try:
        page.goto(html_file.resolve().as_uri(), wait_until="load", timeout=LOAD_TIMEOUT_MS)
        shown = page.evaluate(
            "Array.from(document.images, i => ({src: i.getAttribute('src') || '',"
            " ok: i.complete && i.naturalWidth > 0}))"
        )
    finally:
        page.close()
    referenced = _sources(html_file.read_text())
    if len(shown) != len(referenced):
        problems.append(f"{len(shown)} images shown, {len(referenced)} in the source")
    problems += [f"image not shown: {_short(i['src'])}" for i in shown if not i["ok"]]
    return problems


def _short(url: str) -> str:
    """A URL fit for a message: an inlined image is cut to its start."""
    return url[:40] + "..." if url.startswith("data:") and len(url) > 40 else url


def _inlined(path: Path) -> str:
    """The ``src`` that inlines the PNG file at ``path``."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_report_opens_in_chromium_with_every_image_and_no_error(browser, report):
    assert _problems(browser, report.html) == []
    figures = [*report.plots.values(), report.psnr_plot, *report.crops]
    assert report.plots and report.crops
    sources = set(_sources(report.html.read_text()))
    # each plot and crop is in the page, so the browser check above covered each one
    assert [f.name for f in figures if _inlined(f) not in sources] == []


def test_a_missing_or_broken_image_is_caught(browser, report, tmp_path):
    """The check can fail: one image linked to a deleted plot file, one that does not decode."""
    page = report.html.read_text()
    plot = report.psnr_plot
    relative = plot.relative_to(report.folder).as_posix()
    linked = page.replace(f'src="{_inlined(plot)}"', f'src="{relative}"')
    assert linked != page
    variant = report.folder / "linked.html"
    variant.write_text(linked)
    assert _problems(browser, variant) == []  # a link to a file that is there is fine...
    plot.unlink()
    missing = _problems(browser, variant)  # ...and is caught once the file is gone
    assert any(p.startswith("failed:") and p.count(relative) for p in missing), missing
    assert f"image not shown: {relative}" in missing, missing

    corrupt = tmp_path / "corrupt.html"
    truncated = "data:image/png;base64,iVBORw0KGgo="  # the PNG signature and nothing more
    corrupt.write_text(page.replace(f'src="{_inlined(report.crops[0])}"', f'src="{truncated}"'))
    broken = _problems(browser, corrupt)
    assert broken and all(p.startswith("image not shown: data:image/png") for p in broken), broken
