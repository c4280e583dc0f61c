// Draw a digit: the drawing is reduced to the 8×8, 0–16 format of data/digits.csv and
// classified by the model in WebAssembly (crates/nn-wasm) on every change.
import init, { Classifier } from "./pkg/nn_wasm.js";

const GRID = 32; // the bitmap the data set's 8×8 counts were made from
const BLOCK = 4; // 32 / 8: each feature counts the on cells of a 4×4 block

const pad = document.getElementById("pad");
const ink = pad.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen").getContext("2d");
const bars = document.getElementById("bars");
const status = document.getElementById("status");

// What the page exposes for tests and the curious: timings and the latest prediction.
const state = (window.nn = {
  ready: false,
  error: null,
  firstPredictionMs: null, // performance.now() when the first prediction was shown
  predictMs: [], // the model's own time of each prediction
  predictions: 0,
  last: null, // { features, probabilities, top, label }
  loadedMs: null, // performance.now() when the module and the model were in
  timePredictions, // (n) → mean ms of n predictions of the current drawing
});

let model = null;
let names = [];

/** The bounding box of the ink (alpha > 0), or null for an empty pad. */
function inkBox(alpha, w, h) {
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (alpha[y * w + x] > 0) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
}

/** Mean ink over the pad pixels [x0, x1) × [y0, y1) (area averaging). */
function meanInk(alpha, w, x0, y0, x1, y1) {
  let sum = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) sum += alpha[y * w + x];
  return sum / Math.max(1, (x1 - x0) * (y1 - y0));
}

/** The drawing as 64 features: box scaled to fit 32×32 (longer side), centred, each grid
 *  cell on when ≥ half its area is ink, on cells counted per 4×4 block. */
function features() {
  const { width: w, height: h } = pad;
  const rgba = ink.getImageData(0, 0, w, h).data;
  const alpha = new Float32Array(w * h);
  for (let i = 0; i < w * h; i++) alpha[i] = rgba[4 * i + 3] / 255;
  const out = new Float32Array(64);
  const box = inkBox(alpha, w, h);
  if (!box) return out;
  const s = GRID / Math.max(box.w, box.h); // grid cells per pad pixel
  const ox = (GRID - box.w * s) / 2; // centring offsets, in grid cells
  const oy = (GRID - box.h * s) / 2;
  for (let gy = 0; gy < GRID; gy++) {
    for (let gx = 0; gx < GRID; gx++) {
      // the pad pixels under grid cell (gx, gy), at least one
      const x0 = Math.floor(box.x + (gx - ox) / s), x1 = Math.ceil(box.x + (gx + 1 - ox) / s);
      const y0 = Math.floor(box.y + (gy - oy) / s), y1 = Math.ceil(box.y + (gy + 1 - oy) / s);
      const cx0 = Math.max(x0, box.x), cx1 = Math.min(Math.max(x1, x0 + 1), box.x + box.w);
      const cy0 = Math.max(y0, box.y), cy1 = Math.min(Math.max(y1, y0 + 1), box.y + box.h);
      if (cx1 <= cx0 || cy1 <= cy0) continue;
      if (meanInk(alpha, w, cx0, cy0, cx1, cy1) >= 0.5) {
        out[Math.floor(gy / BLOCK) * 8 + Math.floor(gx / BLOCK)] += 1;
      }
    }
  }
  return out;
}

/** Shows the 8×8 input as grey levels. */
function showSeen(x) {
  const cell = seen.canvas.width / 8;
  for (let i = 0; i < 64; i++) {
    const v = 255 - Math.round((x[i] / 16) * 255);
    seen.fillStyle = `rgb(${v},${v},${v})`;
    seen.fillRect((i % 8) * cell, Math.floor(i / 8) * cell, cell, cell);
  }
}

/** One bar per class, made once. */
function makeBars() {
  bars.replaceChildren(
    ...names.map((n) => {
      const li = document.createElement("li");
      li.innerHTML = `<span class="label"></span><span class="bar"><span class="fill"></span></span><span class="value"></span>`;
      li.querySelector(".label").textContent = n;
      return li;
    }),
  );
}

function showBars(p, top) {
  [...bars.children].forEach((li, k) => {
    li.classList.toggle("top", k === top);
    li.querySelector(".fill").style.width = `${(p[k] * 100).toFixed(1)}%`;
    li.querySelector(".value").textContent = p[k].toFixed(3);
  });
}

/** Classifies the current drawing and shows the result. */
function update() {
  const x = features();
  const t0 = performance.now();
  const p = model.predict(x);
  state.predictMs.push(performance.now() - t0);
  let top = 0;
  for (let k = 1; k < p.length; k++) if (p[k] > p[top]) top = k;
  showSeen(x);
  showBars(p, top);
  state.predictions += 1;
  state.last = { features: [...x], probabilities: [...p], top, label: names[top] };
  if (state.firstPredictionMs === null) state.firstPredictionMs = performance.now();
}

function timePredictions(n) {
  const x = features();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) model.predict(x);
  return (performance.now() - t0) / n; // the clock's resolution is too coarse for one call
}

// ---- drawing ------------------------------------------------------------------------------

let drawing = false;
let pending = false;

function scheduleUpdate() {
  if (pending || !model) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    update();
  });
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
}

pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  const [x, y] = point(e);
  ink.beginPath();
  ink.moveTo(x, y);
  ink.lineTo(x, y);
  ink.stroke();
  scheduleUpdate();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const [x, y] = point(e);
  ink.lineTo(x, y);
  ink.stroke();
  scheduleUpdate();
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => {
    drawing = false;
    scheduleUpdate();
  });
}

function clear() {
  ink.clearRect(0, 0, pad.width, pad.height);
  if (model) update();
}
document.getElementById("clear").addEventListener("click", clear);

// ---- start --------------------------------------------------------------------------------

async function start() {
  ink.lineWidth = 24;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.strokeStyle = "#111";
  try {
    // the module and the model download at the same time
    const modelBytes = fetch("digits.nnm").then((r) => {
      if (!r.ok) throw new Error(`digits.nnm: HTTP ${r.status}`);
      return r.arrayBuffer();
    });
    const [, bytes] = await Promise.all([init(), modelBytes]);
    state.loadedMs = performance.now();
    model = new Classifier(new Uint8Array(bytes));
    names = model.class_names();
    if (names.length === 0) names = [...Array(10).keys()].map(String);
    makeBars();
    update();
    status.textContent = "draw with the mouse or a finger";
    state.ready = true;
  } catch (e) {
    state.error = String(e);
    status.textContent = `could not load the model: ${e}`;
  }
}

start();
