"""Debian's headless chromium, started with no network: what a page's images and requests did, and screenshots.

A screenshot of a report for the README::

    python tests/browser.py REPORT.html SHOT.png [WIDTH HEIGHT [SCALE]]
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROBE_ID = "cxrtl-browser-probe"
# A guard against a browser that hangs, not a speed check (the page's own timers run in virtual time); minutes,
# as a loaded machine may take tens of seconds to start chromium.
_LIMIT_S = 300
# Runs before the page's own Content-Security-Policy meta (so that policy does not block it), records what
# the policy refused, and once the page has loaded writes into the DOM every resource the page requested
# (Resource Timing lists attempts that failed or were refused as well) and each image's state.
_PROBE = """<script>
const cxrtlViolations = [];
document.addEventListener("securitypolicyviolation", (e) => cxrtlViolations.push(e.blockedURI));
window.addEventListener("load", () => setTimeout(() => {
  const out = document.createElement("pre");
  out.id = "__PROBE_ID__";
  out.textContent = JSON.stringify({
    images: [...document.images].map((i) => ({src: i.getAttribute("src").slice(0, 60), complete: i.complete,
                                             width: i.naturalWidth, shown: i.getBoundingClientRect().width})),
    requests: performance.getEntriesByType("resource").map((r) => r.name),
    refused: cxrtlViolations,
    layout: {
      window: [window.innerWidth, window.innerHeight],
      pageWidth: document.documentElement.scrollWidth,
      bottoms: Object.fromEntries(["banner", "provenance"].filter((id) => document.getElementById(id))
        .map((id) => [id, document.getElementById(id).getBoundingClientRect().bottom])),
      firstTable: (() => { const t = document.querySelector("table");
        return t ? {scrollWidth: t.scrollWidth, clientWidth: t.clientWidth,
                    lastHeaderRight: t.querySelector("th:last-child").getBoundingClientRect().right} : null; })(),
    },
  });
  document.body.appendChild(out);
}, 100));
</script>""".replace("__PROBE_ID__", PROBE_ID)


def chromium() -> str | None:
    return shutil.which("chromium")


def _run(url: str, *args: str) -> subprocess.CompletedProcess:
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    with tempfile.TemporaryDirectory(prefix="cxrtl-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",  # it runs as root in CI containers
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # No network: every host name fails to resolve, and any connection goes to a closed port.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=http://127.0.0.1:9",
            "--virtual-time-budget=5000",  # let the load event and the probe's timer run before the dump
            *args,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=_LIMIT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


@dataclass
class Loaded:
    """What the browser did with a page."""

    images: list[dict]  # src (its first 60 characters), complete, width (naturalWidth), shown (on the page)
    requests: list[str]  # every resource the page asked for
    refused: list[str]  # what its Content-Security-Policy blocked
    # The window's size, the page's width, the bottom edge of #banner and #provenance, the first table's widths
    layout: dict

    @property
    def broken(self) -> list[str]:
        return [i["src"] for i in self.images if not (i["complete"] and i["width"] > 0)]


def load(page: str, width: int = 1400, height: int = 900) -> Loaded:
    """Open the HTML text ``page`` from a file in a ``width`` x ``height`` window and report what happened (the
    probe goes into a copy)."""
    head = page.lower().find("<head>")
    if head < 0:
        raise ValueError("the page has no <head>")
    probed = page[: head + len("<head>")] + _PROBE + page[head + len("<head>") :]
    with tempfile.TemporaryDirectory(prefix="cxrtl-page-") as folder:
        path = Path(folder) / "page.html"
        path.write_text(probed)
        dom = _run(path.as_uri(), "--dump-dom", f"--window-size={width},{height}").stdout
    start = dom.find(f'<pre id="{PROBE_ID}">')
    if start < 0:
        raise RuntimeError(f"the probe wrote nothing: {dom[-1000:]}")
    text = dom[start + len(f'<pre id="{PROBE_ID}">') : dom.index("</pre>", start)]
    return Loaded(**json.loads(html.unescape(text)))


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2400, scale: float = 1) -> Path:
    """A PNG of the page as a ``width`` x ``height`` window shows it (the page's top ``height`` pixels), at
    device scale factor ``scale``."""
    out = Path(out).resolve()
    window = (f"--window-size={width},{height}", f"--force-device-scale-factor={scale}", "--hide-scrollbars")
    _run(Path(page).resolve().as_uri(), f"--screenshot={out}", *window)
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (3, 5, 6):
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    size = [int(v) for v in sys.argv[3:5]] + [float(v) for v in sys.argv[5:6]]
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2]), *size))
