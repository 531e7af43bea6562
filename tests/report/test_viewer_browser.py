"""The viewer page in a real headless Chromium (the operating system's, driven by Playwright): the sliders, the
slice scroller and the outline toggle change the canvas's pixels as they should."""

import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from picard_ad.cli import main
from picard_ad.report.viewer import collect_view, colormap_table, dequantize

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra has it)")


def _chromium() -> str | None:
    given = os.environ.get("PICARD_AD_CHROMIUM")
    if given:
        return given
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def page(heatmap_folder, tmp_path_factory):
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium executable (install the OS package 'chromium' or set PICARD_AD_CHROMIUM)")
    html = tmp_path_factory.mktemp("page") / "viewer.html"
    result = CliRunner().invoke(main, ["view", str(heatmap_folder[0]), "--out", str(html)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            tab = browser.new_page()
            errors = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.on("request", lambda request: errors.append(f"fetched {request.url}")
                   if not request.url.startswith(("file:", "data:")) else None)
            tab.goto(html.as_uri())
            yield tab
            assert errors == []
        finally:
            browser.close()


def canvas(tab) -> np.ndarray:
    """The viewer's canvas once drawn: (h, w, 3) uint8."""
    flat, rows, cols = tab.evaluate("""async () => {
        await window.picardViewer.idle();
        const c = document.getElementById("view");
        return [Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data), c.height, c.width];
    }""")
    return np.asarray(flat, dtype=np.uint8).reshape(rows, cols, 4)[..., :3]


def set_input(tab, element_id: str, value) -> None:
    """Move a slider (or set a field) as a user would: a new value, then the input event."""
    tab.evaluate("""([id, value]) => {
        const element = document.getElementById(id);
        element.value = String(value);
        element.dispatchEvent(new Event("input", { bubbles: true }));
    }""", [element_id, value])


def choose(tab, name: str) -> None:
    tab.locator("#items button", has_text=name).click()


def test_opacity_and_threshold_sliders(page, heatmap_folder):
    spot = collect_view(heatmap_folder[0]).items[1]
    grey, codes, outline = spot.slices[0].image.astype(int), spot.slices[0].heatmap, spot.slices[0].outline
    choose(page, "spot")
    page.locator("#outline").uncheck()
    set_input(page, "threshold", spot.low)

    set_input(page, "opacity", 0)
    assert np.array_equal(canvas(page), np.repeat(grey[..., None], 3, axis=2))  # opacity 0: the image itself

    hot = np.unravel_index(np.argmax(codes), codes.shape)
    colour = np.asarray(colormap_table()[codes[hot]])
    distances = []
    for opacity in (25, 50, 100):
        set_input(page, "opacity", opacity)
        distances.append(np.abs(canvas(page)[hot].astype(int) - colour).sum())
    assert distances[0] > distances[1] > distances[2] and distances[2] <= 3  # towards the colour map's colour
    lut = np.asarray(colormap_table())
    assert np.abs(canvas(page).astype(int) - lut[codes]).max() <= 1  # opacity 1: the colour-mapped heatmap

    # A threshold between two scores: pixels below it show the plain image, the hot spot keeps its colour.
    middle = np.argwhere((codes > 100) & (codes < 200))[0]
    threshold = dequantize(np.uint8(codes[tuple(middle)] + 10), spot.low, spot.high)
    set_input(page, "threshold", threshold)
    shown = canvas(page)
    below = dequantize(codes, spot.low, spot.high) < threshold - 1e-9
    assert np.array_equal(shown[below], np.repeat(grey[below][:, None], 3, axis=1))
    assert np.abs(shown[hot].astype(int) - colour).sum() <= 3 and shown[tuple(middle)][0] == grey[tuple(middle)]
    set_input(page, "threshold", spot.high + (spot.high - spot.low))  # above the hot spot's score
    assert np.array_equal(canvas(page)[hot], [grey[hot]] * 3)

    # Outlines: magenta on the annotated lesion's boundary when shown, the image beneath when not.
    set_input(page, "opacity", 0)
    page.locator("#outline").check()
    shown = canvas(page)
    assert (shown[outline] == [255, 0, 255]).all() and np.array_equal(shown[~outline][:, 0], grey[~outline])
    page.locator("#outline").uncheck()
    assert np.array_equal(canvas(page)[outline][:, 0], grey[outline])


def test_the_slice_slider_shows_the_volumes_other_slices(page, heatmap_folder):
    vol = collect_view(heatmap_folder[0]).items[2]
    choose(page, "vol")
    set_input(page, "opacity", 0)
    assert page.locator("#slice-control").is_visible()
    first = canvas(page)[..., 0]
    assert np.array_equal(first, vol.slices[0].image)
    set_input(page, "slice", 2)
    last = canvas(page)[..., 0]
    assert np.array_equal(last, vol.slices[2].image) and not np.array_equal(first, last)
    assert "3 / 3 (index 2)" in page.locator("#slice-label").inner_text()
    page.locator("body").press("ArrowDown")  # keys scroll too
    assert np.array_equal(canvas(page)[..., 0], vol.slices[1].image)

    set_input(page, "opacity", 100)
    set_input(page, "threshold", vol.low)
    lut = np.asarray(colormap_table())
    assert np.abs(canvas(page).astype(int) - lut[vol.slices[1].heatmap]).max() <= 1
    choose(page, "plain")
    assert not page.locator("#slice-control").is_visible()
