"""`dvc plots show`: the project's page renders with no network (vega inlined from
.dvc/plots/offline.html), and the training curves are one plot per metric with a line per
model. The browser part drives Debian's chromium as tests/test_demo_browser.py does and is
skipped without it (CI installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faceid.report.curves import METRICS, gather
from tests.vendor_vega import TEMPLATE, VENDOR, VERSIONS, inlined_versions

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("FACEID_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip


def _dvc(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The pipeline's dvc.yaml, params and .dvc config, with the committed ROC/CMC plot data
    and the curves stage's files made from the committed training logs (14 models)."""
    dest = tmp_path_factory.mktemp("plots")
    for name in ("dvc.yaml", "params.yaml", ".dvc/config", ".dvc/plots", "metrics/plots"):
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)
    gather(dest / "params.yaml", ROOT / "metrics" / "train", dest / "metrics" / "curves")
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def test_template_inlines_the_pinned_builds_and_their_licences():
    page = TEMPLATE.read_text(encoding="utf8")
    assert inlined_versions(page) == VERSIONS
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN script tags never enter
    assert "cdn.jsdelivr" not in page
    assert all((VENDOR / f"LICENSE-{name}.txt").read_text().startswith("Copyright") for name in VERSIONS)


def test_training_curves_are_one_plot_per_metric_with_every_model(project):
    shown = json.loads(_dvc(["plots", "show", "--json"], project))["data"]
    ids = sorted(shown)
    curves = [i for i in ids if i.startswith("metrics/curves/")]
    assert curves == sorted(f"metrics/curves/{m}.json" for m in METRICS), ids
    assert not any(i.startswith("metrics/train/") for i in ids), ids  # no single-line plot per model
    for plot_id in curves:
        rows = shown[plot_id][0]["content"]["data"]["values"]
        assert len({row["model"] for row in rows}) == 14, plot_id  # 7 tasks (orig included) x 2 backbones
    assert len(ids) == 7 + 1 + 3  # ROC per task (orig too), CMC, 3 training curves


@pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM}: `apt-get install -y chromium` (or set FACEID_CHROMIUM)"
)
def test_plots_page_renders_in_a_browser_with_the_network_off(project):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: `pip install playwright`"
    )
    out = project / "page"
    _dvc(["plots", "show", "-o", str(out)], project)
    index = out / "index.html"
    assert index.stat().st_size > 800_000  # the inlined scripts
    blocked: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def route(request_route):  # the network is off: only the page's own file loads
            if request_route.request.url.startswith("file://"):
                request_route.continue_()
            else:
                blocked.append(request_route.request.url)
                request_route.abort()

        page.route("**/*", route)
        page.goto(index.as_uri())
        plots = page.locator("body > div[id]")
        n = plots.count()
        assert n == 11
        page.wait_for_function(
            f"document.querySelectorAll('body > div[id] canvas, body > div[id] svg.marks').length >= {n}",
            timeout=60_000,
        )
        sizes = page.evaluate("[...document.querySelectorAll('body > div[id] canvas')].map(c => [c.width, c.height])")
        browser.close()
    assert errors == [] and blocked == [], (errors, blocked)
    assert len(sizes) == n and all(w > 100 and h > 100 for w, h in sizes), sizes
