"""The dashboard in a real browser: Debian's chromium, headless, offline.

plotly.js builds the charts at load time, so only a browser shows whether they render. The
static HTML has no ``main-svg`` or ``plot-container plotly`` elements; the DOM after load must,
one container per figure, with no console message of any kind (plotly logs nothing when all
is well) and no two labels of a figure overlapping (measured in the page with
getBoundingClientRect). chromium is a declared dependency (setup.sh): a missing one fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from test_dashboard import study_run, write_profile

from lab.dashboard import render_dashboard

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--enable-logging=stderr", "--v=0"]

# Appended to a copy of the dashboard: after load, report the figures and every pair of
# overlapping labels (tick labels, subplot and figure titles, legend entries) per figure.
PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const overlaps = [];
  const plots = document.querySelectorAll(".plot-container");
  plots.forEach((pc, i) => {
    const els = [...pc.querySelectorAll(
        ".xtick text, .ytick text, .annotation-text, .gtitle, .legendtext, .g-xtitle text, "
        + ".g-ytitle text, .textpoint text")]
      .map(e => [e.textContent, e.getBoundingClientRect()])
      .filter(([t, r]) => t && r.width > 0 && r.height > 0);
    for (let a = 0; a < els.length; a++) for (let b = a + 1; b < els.length; b++) {
      const [ta, ra] = els[a], [tb, rb] = els[b];
      const ix = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const iy = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (ix > 1 && iy > 1) overlaps.push(`figure ${i}: "${ta}" overlaps "${tb}"`);
    }
  });
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({plots: plots.length, overlaps: overlaps,
                                    width: document.documentElement.clientWidth});
  document.body.appendChild(pre);
}, 300));
</script>"""


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, ("chromium not found: it is a declared dependency of the lab's tests "
                  "(install the Debian package 'chromium'; setup.sh lists it)")
    return path


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def console_messages(stderr: str) -> list[str]:
    """Anything the page said on its console (chromium logs it as INFO:CONSOLE), and errors."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "ERROR:CONSOLE" in line]


def full_dashboard(tmp_path: Path, configs: tuple[str, ...]) -> Path:
    run = study_run(tmp_path / "results", configs=configs)
    write_profile(run)
    return render_dashboard([run], tmp_path / "d.html", baseline=configs[1])


@pytest.mark.parametrize("configs", [
    ("highpte", "lowpte", "ukva"),
    ("highpte", "lowpte", "ukva", "highpte-norandmaps-icount", "lowpte-norandmaps-icount"),
], ids=["3-configs", "5-long-configs"])
@pytest.mark.parametrize("width", [1280, 1024])
def test_charts_render_without_errors_or_overlaps(tmp_path: Path, configs: tuple[str, ...],
                                                  width: int) -> None:
    page = full_dashboard(tmp_path, configs)
    static = page.read_text(encoding="utf-8")
    assert 'class="main-svg"' not in static and 'class="plot-container plotly"' not in static
    figures = static.count("Plotly.newPlot")
    assert figures == 7   # six workloads and the taskpile curve
    probed = tmp_path / "probed.html"
    probed.write_text(static.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    res = run_chromium(tmp_path, f"--window-size={width},1600", "--virtual-time-budget=15000",
                       "--dump-dom", probed.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert console_messages(res.stderr) == []
    assert dom.count('class="plot-container plotly"') == figures
    assert dom.count('class="main-svg"') >= figures
    # the configurations are drawn as tick labels, the subplot titles as annotations
    for config in ("highpte", "lowpte", "ukva"):
        assert re.search(rf'<text[^>]*class="xtick"[^>]*>.*?{config}', dom) or \
            re.search(rf'class="xtick".*?{config}', dom, re.S)
    assert "__kmap_local_pfn_prot" in re.sub(r"<script.*?</script>", "", dom, flags=re.S)
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)
                       .replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["plots"] == figures and probe["width"] == width
    assert probe["overlaps"] == []


def test_screenshot_of_a_three_configuration_dashboard(tmp_path: Path) -> None:
    page = full_dashboard(tmp_path, ("highpte", "lowpte", "ukva"))
    png = tmp_path / "dashboard.png"
    res = run_chromium(tmp_path, "--window-size=1280,2400", "--virtual-time-budget=15000",
                       f"--screenshot={png}", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2400)
    assert len(data) > 100_000, "a page of tables and charts, not a blank one"


def test_the_overlap_probe_catches_unwrapped_labels(tmp_path: Path) -> None:
    """The probe is not vacuous: undo the tick wrapping and it reports the collisions."""
    page = full_dashboard(tmp_path, ("highpte", "lowpte", "ukva", "highpte-norandmaps-icount",
                                     "lowpte-norandmaps-icount"))
    static = page.read_text(encoding="utf-8")
    for wrapped in ("highpte-\\u003cbr\\u003enorandmaps-\\u003cbr\\u003eicount",
                    "lowpte-\\u003cbr\\u003enorandmaps-\\u003cbr\\u003eicount"):
        assert wrapped in static
        static = static.replace(wrapped, wrapped.replace("\\u003cbr\\u003e", ""))
    probed = tmp_path / "probed.html"
    probed.write_text(static.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    res = run_chromium(tmp_path, "--window-size=1024,1600", "--virtual-time-budget=15000",
                       "--dump-dom", probed.as_uri())
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S).group(1)
                       .replace("&quot;", '"').replace("&amp;", "&"))
    assert any('"highpte-norandmaps-icount"' in o for o in probe["overlaps"])
