"""The page of ``picard-ad view``: one HTML file with its data, style and script inline, fetching nothing.

The script decodes each slice's PNGs once (image, 8-bit heatmap codes, outline) and composes the canvas pixel by
pixel: grey image; where the heatmap score (``low + code * (high - low) / 255``) is at or above the threshold,
the colour map's colour blended in at the chosen opacity; outline pixels in magenta on top. The colour map spans
the item's own score range, or with "all images" the range of every item, so that colours compare across images.
A content security policy forbids every fetch, so the page works offline and shows the same everywhere.
``window.picardViewer`` exposes the state and ``idle()``, a promise of the latest drawing, for tests.
"""

from __future__ import annotations

import html
from typing import Any

_CSS = """
body { margin: 0; font: 13px system-ui, sans-serif; display: flex; height: 100vh; color: #222; }
nav { width: 220px; overflow-y: auto; border-right: 1px solid #ccc; padding: 6px; flex: none; }
nav button { display: block; width: 100%; text-align: left; margin: 1px 0; padding: 3px 5px; border: 0;
  background: none; cursor: pointer; font: inherit; overflow-wrap: anywhere; }
nav button.current { background: #dde6f6; }
nav small { color: #666; }
main { flex: 1; display: flex; flex-direction: column; min-width: 0; padding: 6px; }
#controls { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: center; margin-bottom: 6px; }
#controls label { white-space: nowrap; }
#stage { flex: 1; min-height: 0; }
#view { width: 100%; height: 100%; object-fit: contain; object-position: center top; image-rendering: pixelated; }
aside { width: 330px; overflow-y: auto; border-left: 1px solid #ccc; padding: 6px; flex: none; }
aside h3 { margin: 10px 0 4px; font-size: 13px; }
aside table { border-collapse: collapse; width: 100%; }
aside td { border-bottom: 1px solid #eee; padding: 1px 3px; vertical-align: top; overflow-wrap: anywhere; }
aside td:first-child { color: #555; width: 45%; }
#legend { width: 128px; height: 10px; vertical-align: middle; }
.note { color: #8a5a00; }
"""

_BODY = """
<nav><div id="items"></div></nav>
<main>
  <div id="controls">
    <label id="slice-control">slice <input id="slice" type="range" min="0" max="0" step="1" value="0">
      <span id="slice-label"></span></label>
    <label>opacity <input id="opacity" type="range" min="0" max="100" step="1" value="50">
      <span id="opacity-value"></span></label>
    <label>threshold <input id="threshold" type="range" step="any"> <span id="threshold-value"></span></label>
    <label><input id="outline" type="checkbox" checked> outlines</label>
    <label>colours over <select id="scale"><option value="image">this image</option>
      <option value="all">all images</option></select></label>
    <span><span id="legend-low"></span> <canvas id="legend" width="256" height="1"></canvas>
      <span id="legend-high"></span></span>
  </div>
  <div id="stage"><canvas id="view" width="1" height="1"></canvas></div>
</main>
<aside id="info"></aside>
"""

_SCRIPT = """
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("viewer-data").textContent);
  const OUTLINE = [255, 0, 255];
  const $ = (id) => document.getElementById(id);
  const lows = data.items.map((item) => item.low), highs = data.items.map((item) => item.high);
  const all = { low: Math.min(...lows), high: Math.max(...highs) };
  const state = { item: 0, slice: 0, opacity: 0.5, threshold: all.low, outline: true, scale: "image" };
  const cache = new Map();
  const viewer = { data: data, state: state, renders: 0, current: Promise.resolve() };
  viewer.idle = () => viewer.current;
  window.picardViewer = viewer;

  function decode(b64) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => {
        const canvas = document.createElement("canvas");
        canvas.width = image.width;
        canvas.height = image.height;
        const context = canvas.getContext("2d", { willReadFrequently: true });
        context.drawImage(image, 0, 0);
        const rgba = context.getImageData(0, 0, image.width, image.height).data;
        const grey = new Uint8Array(image.width * image.height);
        for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i];
        resolve(grey);
      };
      image.onerror = () => reject(new Error("cannot decode an image of the page"));
      image.src = "data:image/png;base64," + b64;
    });
  }

  function layers(itemIndex, sliceIndex) {
    const key = itemIndex + "/" + sliceIndex;
    if (!cache.has(key)) {
      const slice = data.items[itemIndex].slices[sliceIndex];
      cache.set(key, Promise.all([decode(slice.image), decode(slice.heatmap),
        slice.outline === null ? null : decode(slice.outline)]));
      if (cache.size > 64) cache.delete(cache.keys().next().value);  // decoded slices kept: a bounded cache
    }
    return cache.get(key);
  }

  function number(value) {
    if (value === null || value === undefined) return "n/a";
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }

  let drawing = 0;
  async function compose() {
    const mine = ++drawing;
    const item = data.items[state.item];
    const [image, codes, outline] = await layers(state.item, state.slice);
    if (mine !== drawing) return;  // a later change draws instead
    const [rows, cols] = item.display;
    const canvas = $("view");
    if (canvas.width !== cols || canvas.height !== rows) { canvas.width = cols; canvas.height = rows; }
    const context = canvas.getContext("2d", { willReadFrequently: true });
    const out = context.createImageData(cols, rows);
    const pixels = out.data;
    const alpha = state.opacity, step = (item.high - item.low) / 255, span = all.high - all.low;
    for (let i = 0; i < rows * cols; i++) {
      const grey = image[i];
      let r = grey, g = grey, b = grey;
      if (alpha > 0) {
        const score = item.low + codes[i] * step;
        if (score >= state.threshold) {
          let index = codes[i];
          if (state.scale === "all") {
            index = span > 0 ? Math.min(255, Math.max(0, Math.round((score - all.low) / span * 255))) : 0;
          }
          const colour = data.colormap[index];
          r = Math.round(grey + (colour[0] - grey) * alpha);
          g = Math.round(grey + (colour[1] - grey) * alpha);
          b = Math.round(grey + (colour[2] - grey) * alpha);
        }
      }
      if (state.outline && outline !== null && outline[i]) [r, g, b] = OUTLINE;
      pixels[4 * i] = r; pixels[4 * i + 1] = g; pixels[4 * i + 2] = b; pixels[4 * i + 3] = 255;
    }
    context.putImageData(out, 0, 0);
    viewer.renders += 1;
  }

  function table(title, entries) {
    const section = document.createElement("div");
    const heading = document.createElement("h3");
    heading.textContent = title;
    const body = document.createElement("table");
    for (const [key, value] of entries) {
      const row = body.insertRow();
      row.insertCell().textContent = key;
      const nested = value !== null && typeof value === "object";
      row.insertCell().textContent = nested ? JSON.stringify(value) : number(value);
    }
    section.append(heading, body);
    return section;
  }

  function showInfo() {
    const item = data.items[state.item], slice = item.slices[state.slice], run = item.run;
    const info = $("info");
    info.replaceChildren();
    const blocks = item.factor > 1 ? " (blocks of " + item.factor + " x " + item.factor + ")" : "";
    info.append(table("Image", [["name", slice.name], ["source", item.source], ["slice", slice.slice_index],
      ["stored size", item.shape.join(" x ")], ["shown size", item.display.join(" x ") + blocks],
      ["score range", number(item.low) + " .. " + number(item.high)]]));
    if (slice.metrics) info.append(table("Metrics (picard-ad evaluate)", Object.entries(slice.metrics)));
    info.append(table("Method", [["method", run.method], ["score", run.score],
      ...Object.entries(run.settings || {}).filter(([key]) => key !== "score"),
      ["model", run.model], ["annotations", run.annotations], ["input", run.input],
      ["picard-ad", run.package_version]]));
    const record = slice.record || {};
    info.append(table("Slice", Object.entries(Object.assign({}, record.meta || {}, record.heatmap || {}))));
    if (data.evaluation) {
      info.append(table("Evaluation " + data.evaluation.path, Object.entries(data.evaluation.summary)));
    }
    for (const note of data.notes) {
      const line = document.createElement("p");
      line.className = "note";
      line.textContent = note;
      info.append(line);
    }
  }

  function showControls() {
    const item = data.items[state.item];
    const last = item.slices.length - 1;
    $("slice-control").style.display = last > 0 ? "" : "none";
    $("slice").max = String(last);
    $("slice").value = String(state.slice);
    $("slice-label").textContent = (state.slice + 1) + " / " + item.slices.length +
      " (index " + item.slices[state.slice].slice_index + ")";
    $("opacity-value").textContent = Math.round(state.opacity * 100) + "%";
    $("threshold-value").textContent = number(state.threshold);
    const low = state.scale === "all" ? all.low : item.low, high = state.scale === "all" ? all.high : item.high;
    $("legend-low").textContent = number(low);
    $("legend-high").textContent = number(high);
    for (const button of $("items").children) {
      button.classList.toggle("current", Number(button.dataset.index) === state.item);
    }
  }

  function update() {
    showControls();
    showInfo();
    viewer.current = compose();
    return viewer.current;
  }

  function listItems() {
    data.items.forEach((item, index) => {
      const button = document.createElement("button");
      button.dataset.index = String(index);
      button.textContent = item.name + " ";
      const extra = document.createElement("small");
      const score = item.slices[0].metrics ? item.slices[0].metrics.image_score : undefined;
      extra.textContent = (item.slices.length > 1 ? item.slices.length + " slices" : "") +
        (score !== undefined && item.slices.length === 1 ? "score " + number(score) : "");
      button.append(extra);
      button.addEventListener("click", () => { state.item = index; state.slice = 0; update(); });
      $("items").append(button);
    });
  }

  function legend() {
    const context = $("legend").getContext("2d");
    const row = context.createImageData(256, 1);
    data.colormap.forEach((colour, i) => { row.data.set([colour[0], colour[1], colour[2], 255], 4 * i); });
    context.putImageData(row, 0, 0);
  }

  const threshold = $("threshold");
  threshold.min = String(all.low);
  threshold.max = String(all.high);
  threshold.value = String(all.low);
  $("slice").addEventListener("input", (event) => { state.slice = Number(event.target.value); update(); });
  $("opacity").addEventListener("input", (event) => { state.opacity = Number(event.target.value) / 100; update(); });
  threshold.addEventListener("input", (event) => { state.threshold = Number(event.target.value); update(); });
  $("outline").addEventListener("change", (event) => { state.outline = event.target.checked; update(); });
  $("scale").addEventListener("change", (event) => { state.scale = event.target.value; update(); });
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    const last = data.items[state.item].slices.length - 1;
    if (event.key === "ArrowUp" && state.slice < last) { state.slice += 1; update(); }
    if (event.key === "ArrowDown" && state.slice > 0) { state.slice -= 1; update(); }
  });
  listItems();
  legend();
  update();
})();
"""

# Nothing may be fetched: data: images only, inline style and script.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _script_json(data: dict[str, Any]) -> str:
    """Strict JSON safe inside a <script> element: every '<' escaped, so no '</script>' can end it early."""
    from picard_ad.io.writers import dumps_json

    return dumps_json(data, separators=(",", ":")).replace("<", "\\u003c")


def page_html(data: dict[str, Any], title: str) -> str:
    """The whole page: ``data`` as ``viewer.viewer_data`` gives it, ``title`` for the browser's tab."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _BODY,
        f'<script type="application/json" id="viewer-data">{_script_json(data)}</script>',
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]) + "\n"  # fmt: skip
