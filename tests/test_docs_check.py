"""docs/check_site.py: the reader's-eye check of the built documentation catches what it should."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "check_site.py"
if not SCRIPT.is_file():  # a copy of tests/ without the docs (never the case in the repository)
    pytest.skip(f"{SCRIPT} not present", allow_module_level=True)
_spec = importlib.util.spec_from_file_location("check_site", SCRIPT)
check_site = importlib.util.module_from_spec(_spec)
sys.modules["check_site"] = check_site
_spec.loader.exec_module(check_site)

needs_browser = pytest.mark.skipif(
    check_site.find_browser() is None,
    reason="no Chromium (apt-get install chromium); .ci/run installs it and runs these",
)

THEME = '<script src="_static/theme.js"></script>'
GOOD = f"""<!doctype html><html><head><title>ok</title>
<link rel="stylesheet" href="_static/site.css?digest=1">{THEME}</head>
<body><main><a href="api/page.html#x">api</a><a href="https://example.invalid/">an outside link</a>
<img src="_static/logo.svg"></main></body></html>"""


def _site(tmp_path: Path, index: str = GOOD) -> Path:
    static = tmp_path / "_static"
    static.mkdir()
    (static / "theme.js").write_text('document.documentElement.dataset.theme = "light";')
    (static / "site.css").write_text('@import "more.css";\nbody { color: #123; }')
    (static / "more.css").write_text('@font-face { src: url("fonts/f.woff2") format("woff2"); }')
    (static / "fonts").mkdir()
    (static / "fonts" / "f.woff2").write_bytes(b"\0")
    (static / "logo.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
        '<rect width="4" height="4"/></svg>'
    )
    (static / "fragment.html").write_text("<script src=\"{{ pathto('x.js', 1) }}\"></script>")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "page.html").write_text(
        '<html><head><script src="../_static/theme.js"></script></head><body><main>'
        '<a href="../index.html">home</a></main></body></html>'
    )
    (tmp_path / "index.html").write_text(index)
    return tmp_path


def test_static_check_passes_a_complete_local_site(tmp_path):
    assert check_site.static_problems(_site(tmp_path)) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s / "_static" / "theme.js", "_static/theme.js"),
        (lambda s: s / "_static" / "fonts" / "f.woff2", "fonts/f.woff2"),  # through @import
        (lambda s: s / "_static" / "logo.svg", "_static/logo.svg"),
        (lambda s: s / "api" / "page.html", "api/page.html"),
    ],
)
def test_static_check_reports_each_missing_file(tmp_path, edit, expected):
    site = _site(tmp_path)
    edit(site).unlink()
    problems = check_site.static_problems(site)
    assert len(problems) >= 1
    assert any(expected in p and "does not exist" in p for p in problems), problems


def test_static_check_rejects_assets_from_other_hosts(tmp_path):
    index = GOOD.replace(THEME, THEME + '<script src="https://cdn.example.invalid/x.js"></script>')
    site = _site(tmp_path, index)
    (site / "_static" / "more.css").write_text("@import url(//fonts.example.invalid/f.css);")
    problems = check_site.static_problems(site)
    assert any("cdn.example.invalid" in p and "offline" in p for p in problems), problems
    assert any("fonts.example.invalid" in p for p in problems), problems


def test_static_check_needs_pages(tmp_path):
    assert "no HTML pages" in check_site.static_problems(tmp_path)[0]


@needs_browser
def test_browser_passes_a_working_page(tmp_path):
    site = _site(tmp_path)
    assert (
        check_site.browser_problems(
            site, ["index.html", "api/page.html"], check_site.find_browser()
        )
        == []
    )


BAD_PAGES = {  # page body -> what the report must say
    "<script>notDefinedAnywhere();</script>": "notDefinedAnywhere",
    '<script>console.error("boom")</script>': "console.error: boom",
    '<script src="_static/gone.js"></script>': "ERR_FILE_NOT_FOUND",
    '<img src="https://example.invalid/x.png">': "offline",
    "<script>document.documentElement.removeAttribute('data-theme')</script>": "theme's script",
}


@needs_browser
def test_browser_reports_what_a_reader_would_see(tmp_path):
    site = _site(tmp_path)
    pages = []
    for k, body in enumerate(BAD_PAGES):
        (site / f"bad{k}.html").write_text(GOOD.replace("</main>", body + "</main>"))
        pages.append(f"bad{k}.html")
    problems = check_site.browser_problems(site, ["index.html", *pages], check_site.find_browser())
    assert not [p for p in problems if "/index.html" in p], problems
    for k, expected in enumerate(BAD_PAGES.values()):
        mine = [p for p in problems if f"/bad{k}.html" in p]
        assert any(expected in p for p in mine), (expected, mine)


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    site = _site(tmp_path)
    assert check_site.main([str(site), "--no-browser"]) == 0
    (site / "_static" / "theme.js").unlink()
    assert check_site.main([str(site), "--no-browser"]) == 1
    assert "theme.js" in capsys.readouterr().err
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    assert check_site.main([str(site), "--require-browser"]) == 2
