"""The dashboard as a person sees it, in headless Chromium (Debian's, driven by
Playwright): a run appears, its round count advances, its loss chart has a point per
round, and a killed node turns offline. A screenshot goes to build/dashboard.png.

`make test` installs Chromium (`make browser`) and Playwright (`make install`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from observed_deployment import HEARTBEAT, start_deployment, start_run, write_app
from procs import ROOT, Procs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROUNDS = 4
SCREENSHOT = ROOT / "build" / "dashboard.png"
CHROMIUM = ("chromium", "chromium-browser")
WAIT_MS = 30_000
"""How long a check waits for the page to show something (it polls every second)."""


@pytest.fixture
def page() -> Iterator[Any]:
    """A headless Chromium page (the system's Chromium: nothing is downloaded)."""
    executable = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    if executable is None:
        pytest.fail("Chromium is not installed: `make browser` installs Debian's package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 660})
        finally:
            browser.close()


def test_the_dashboard_follows_a_run_and_its_nodes(procs: Procs, tmp_path: Path, page: Any) -> None:
    deployment = start_deployment(procs, write_app(tmp_path / "app"))
    page.goto(f"http://{deployment.dashboard}/")
    nodes = page.locator("tr.node")
    nodes.nth(1).wait_for(timeout=WAIT_MS)
    assert nodes.count() == 2
    assert page.locator('tr.node[data-online="true"]').count() == 2
    for node_id in deployment.node_ids:
        row = page.locator(f'tr.node[data-node-id="{node_id}"]')
        assert "partition-id=" in row.inner_text()

    server = start_run(procs, deployment, rounds=ROUNDS, fit_sleep=0.7)
    run = page.locator("tr.run")
    run.first.wait_for(timeout=WAIT_MS)  # the run appears
    progress = run.first.locator(".round")
    page.wait_for_function(
        "() => Number(document.querySelector('tr.run .round').dataset.round) >= 1",
        timeout=WAIT_MS,
    )
    seen = int(progress.get_attribute("data-round") or 0)
    assert seen < ROUNDS, "the run ended before the page could see it under way"
    page.wait_for_function(  # the round count advances
        f"() => Number(document.querySelector('tr.run .round').dataset.round) > {seen}",
        timeout=WAIT_MS,
    )
    assert server.wait(timeout=90) == 0, server.tail()

    page.wait_for_selector('tr.run[data-status="completed"]', timeout=WAIT_MS)
    assert progress.inner_text() == f"round {ROUNDS} of {ROUNDS}"
    chart = page.locator('svg.chart[data-metric="loss/distributed"]')
    assert chart.locator("circle").count() == ROUNDS
    assert page.locator('svg.chart[data-metric="evaluate/accuracy"] circle').count() == ROUNDS
    tasks = page.locator("tr.node td.tasks").all_inner_texts()
    assert tasks == [str(ROUNDS * 2)] * 2  # a fit and an evaluate per round, each node

    killed = deployment.node_ids[1]
    deployment.nodes[1].kill()
    page.wait_for_selector(
        f'tr.node[data-node-id="{killed}"][data-online="false"]', timeout=20_000 * HEARTBEAT
    )
    assert "offline" in page.locator(f'tr.node[data-node-id="{killed}"]').inner_text()
    assert page.locator('tr.node[data-online="true"]').count() == 1
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert deployment.link.proc.terminate() == 0, deployment.link.proc.tail()
