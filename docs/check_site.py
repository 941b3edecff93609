"""Checks a built documentation site as a reader would: local assets only, no JS errors in Chromium.

    python docs/check_site.py docs/_build/html [--page index.html --page api/top.html]
                                               [--require-browser | --no-browser]

1. Static, every page: each script, stylesheet, icon, image and font the HTML or its CSS refers to
   must exist under the site directory (the site must work offline, opened from file://), no asset
   may come from another host, and every link to another page of the site must resolve.
2. Browser, the given pages: headless Chromium (Debian's `chromium`), driven over the DevTools
   protocol on a pipe, loads each page from file:// with every host name unresolvable; an uncaught
   exception, a console error, a failed request or any request leaving file:// fails the check,
   and the theme's script must have run (it sets `data-theme` on <html>).

Exit status 0 when everything passes, 1 with one line per problem otherwise, 2 when the browser
is required (--require-browser) but none is found. No third-party Python packages are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["static_problems", "browser_problems", "find_browser", "main"]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# <link rel=...> values that make the browser fetch the target as part of the page.
FETCHED_RELS = {
    "stylesheet",
    "icon",
    "shortcut",
    "preload",
    "modulepreload",
    "manifest",
    "apple-touch-icon",
}
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""")


class _Refs(HTMLParser):
    """Collects (kind, url) pairs: kind "asset" for what the page loads, "link" for <a href>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        if tag in ("script", "img", "source", "iframe", "audio", "video", "embed") and "src" in a:
            self.refs.append(("asset", a["src"]))
        elif tag == "link" and "href" in a:
            rels = set(a.get("rel", "").lower().split())
            self.refs.append(("asset" if rels & FETCHED_RELS else "link", a["href"]))
        elif tag == "a" and "href" in a:
            self.refs.append(("link", a["href"]))


def _local_target(base: Path, url: str) -> Path | None:
    """The file a relative URL points to, or None for in-page anchors and non-file schemes."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "mailto", "javascript", "about") or not parts.path:
        return None
    return (base.parent / unquote(parts.path)).resolve()


def _is_remote(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ftp", "ws", "wss") or url.startswith("//")


def static_problems(site: Path) -> list[str]:
    """Missing or remote assets and broken internal links of every HTML page under `site`."""
    site = site.resolve()
    problems: list[str] = []
    css_files: set[Path] = set()
    # _static/ holds the theme's template fragments (copied verbatim), not pages of the site.
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)
    if not pages:
        return [f"{site}: no HTML pages (was the site built?)"]
    for page in pages:
        parser = _Refs()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        rel = page.relative_to(site)
        for kind, url in parser.refs:
            if _is_remote(url):
                if kind == "asset":
                    problems.append(
                        f"{rel}: loads {url} from another host (the site must work offline)"
                    )
                continue
            target = _local_target(page, url)
            if target is None:
                continue
            if not target.exists():
                what = "asset" if kind == "asset" else "link to"
                problems.append(f"{rel}: {what} {url} -> {target} does not exist")
            elif target.suffix == ".css":
                css_files.add(target)
    seen: set[Path] = set()
    while css_files:  # stylesheets and the stylesheets and fonts they import
        css = css_files.pop()
        seen.add(css)
        for m in CSS_URL.finditer(css.read_text(encoding="utf-8", errors="replace")):
            url = m.group(2) or m.group(4)
            if _is_remote(url):
                problems.append(f"{css.relative_to(site)}: refers to {url} on another host")
                continue
            target = _local_target(css, url)
            if target is None:
                continue
            if not target.exists():
                problems.append(f"{css.relative_to(site)}: url({url}) -> {target} does not exist")
            elif target.suffix == ".css" and target not in seen:
                css_files.add(target)
    return problems


def find_browser() -> str | None:
    """Path of a Chromium-family browser: $CHROMIUM, then the usual names on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).exists() else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _DevTools:
    """The DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4: events out)."""

    def __init__(self, browser: str, profile: str) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child_fds() -> None:  # the protocol's fixed descriptors 3 and 4 in the child
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        cmd = [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host name resolves
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=child_fds,  # noqa: PLW1509 - single-threaded caller
            pass_fds=(3, 4),
            close_fds=True,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Sends one command and returns its result (events seen meanwhile go to `events`)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method} within {timeout:.0f} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collects events for `seconds`."""
        deadline = time.monotonic() + seconds
        while (msg := self._read(deadline)) is not None:
            self.events.append(msg)

    def _read(self, deadline: float) -> dict[str, Any] | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                return None
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError(f"the browser exited: {self.stderr_tail()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def stderr_tail(self) -> str:
        """The browser's last output lines, for error messages."""
        self._log.seek(0)
        return " | ".join(self._log.read().decode(errors="replace").strip().splitlines()[-3:])

    def close(self) -> None:
        """Asks the browser to exit, then makes sure it did."""
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        self._log.close()


# Evaluated in the page after it loaded: proof that the theme's JavaScript ran and laid it out.
PROBE = """JSON.stringify({
  theme: document.documentElement.dataset.theme || null,
  title: document.title,
  main: !!document.querySelector("main"),
  width: document.body ? document.body.scrollWidth : 0,
  brokenImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)
    .map(i => i.getAttribute("src")),
})"""


def _load(dt: _DevTools, url: str, settle: float, probe: str) -> tuple[list[str], dict]:
    """Load url in a new tab; (what went wrong on the way, the probe's JSON result)."""
    target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        dt.send(f"{domain}.enable", session=session)
    dt.events.clear()
    dt.send("Page.navigate", {"url": url}, session=session)
    deadline = time.monotonic() + 30
    while not any(
        e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session
        for e in dt.events
    ):
        if time.monotonic() > deadline:
            return [f"{url}: the page did not finish loading within 30 s"], {}
        dt.pump(0.2)
    dt.pump(settle)  # scripts that run after load (search index, theme switcher, ...)
    result = dt.send(
        "Runtime.evaluate", {"expression": probe, "returnByValue": True}, session=session
    )
    found = json.loads(result["result"]["value"])
    problems = []
    for e in dt.events:
        if e.get("sessionId") != session:
            continue
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            problems.append(
                f"{url}: JavaScript error: {text} ({d.get('url', '')}:{d.get('lineNumber')})"
            )
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
            )
            problems.append(f"{url}: console.{p['type']}: {args}")
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            entry = p["entry"]
            problems.append(f"{url}: {entry.get('text')} {entry.get('url', '')}".rstrip())
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            problems.append(f"{url}: request failed: {p.get('errorText')} ({p.get('type')})")
        elif method == "Network.requestWillBeSent":
            req = p["request"]["url"]
            if urlsplit(req).scheme not in ("file", "data", "blob", "about"):
                problems.append(f"{url}: requested {req} (the site must work offline)")
    dt.send("Target.closeTarget", {"targetId": target})
    return problems, found


def _page_problems(dt: _DevTools, url: str, settle: float) -> list[str]:
    problems, probe = _load(dt, url, settle, PROBE)
    if not probe:
        return problems
    if probe["theme"] not in ("light", "dark"):
        problems.append(f"{url}: the theme's script did not run (no data-theme on <html>)")
    if not probe["main"] or probe["width"] <= 0:
        problems.append(f"{url}: nothing was laid out ({probe})")
    problems += [f"{url}: image {src} did not load" for src in probe["brokenImages"]]
    return problems


def load_page(browser: str, page: Path, probe: str, settle: float = 0.5) -> tuple[list[str], dict]:
    """Open one local page (any, not only this site's) in headless Chromium, offline: (failed
    or remote requests, errors logged; the JSON that the JavaScript expression `probe`
    returns). `eggroll-np bench report`'s test uses it."""
    with tempfile.TemporaryDirectory(prefix="check-site-") as profile:
        dt = _DevTools(browser, profile)
        try:
            dt.send("Browser.getVersion", timeout=60)  # the browser is up
            return _load(dt, Path(page).resolve().as_uri(), settle, probe)
        finally:
            dt.close()


def browser_problems(site: Path, pages: list[str], browser: str, settle: float = 1.0) -> list[str]:
    """Loads `pages` (paths relative to `site`) in headless Chromium; returns what went wrong."""
    problems = []
    missing = [p for p in pages if not (site / p).is_file()]
    if missing:
        return [f"{site}: no page {p}" for p in missing]
    with tempfile.TemporaryDirectory(prefix="check-site-") as profile:
        dt = _DevTools(browser, profile)
        try:
            dt.send("Browser.getVersion", timeout=60)  # the browser is up
            for page in pages:
                problems += _page_problems(dt, (site / page).resolve().as_uri(), settle)
        finally:
            dt.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", type=Path, help="the built HTML directory (docs/_build/html)")
    ap.add_argument(
        "--page",
        action="append",
        dest="pages",
        help="page to load in the browser (default: index.html and api/top.html)",
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--require-browser",
        action="store_true",
        help="fail (exit 2) when no Chromium is found instead of skipping that part",
    )
    mode.add_argument("--no-browser", action="store_true", help="static checks only")
    args = ap.parse_args(argv)
    pages = args.pages or ["index.html", "api/top.html"]
    problems = static_problems(args.site)
    print(f"static: {len(list(args.site.rglob('*.html')))} pages, {len(problems)} problems")
    if not args.no_browser:
        browser = find_browser()
        if browser is None:
            msg = f"no Chromium found (tried $CHROMIUM, {', '.join(BROWSERS)})"
            if args.require_browser:
                print(f"check_site: {msg}", file=sys.stderr)
                return 2
            print(f"browser: skipped: {msg}")
        else:
            found = browser_problems(args.site, pages, browser)
            print(f"browser: {browser}: {', '.join(pages)}: {len(found)} problems")
            problems += found
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
