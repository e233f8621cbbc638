// One view: a canvas showing a slot (slice or position) of a source, with its window, zoom, pan, rotation and flip,
// the overlays in its corners, orientation markers, length measurements and the MPR crosshair. What it shows is
// published on the element (data-index, data-position, data-window, data-view, data-transform, data-rotation,
// data-flip, data-length), for scripts and tests.
import { prefetch } from "./cache.js";
import { orientationMarkers, toPatient, toPicture } from "./geometry.js";
import { drawReferenceLines } from "./layout.js";
import { MEASURING, drawMeasurements, publishMeasurements, startDrawing } from "./tools.js";

const PREFETCH_RADIUS = 10;
const CLICK_SLOP = 3; // px a pointer may move and still click

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

const field = (name) => {
  const node = el("div", "field");
  node.dataset.field = name;
  return node;
};

const round = (value) => String(Math.round(value * 10) / 10);

// Turns and mirrors of the screen, as the 2×2 part [a, b, c, d] of a canvas matrix (x' = a·x + c·y, y' = b·x + d·y;
// y points down, so "right" is clockwise).
const SCREEN_TURNS = { right: [0, 1, -1, 0], left: [0, -1, 1, 0], h: [-1, 0, 0, 1], v: [1, 0, 0, -1] };

// compose(o, m): the matrix that applies m, then o.
const compose = ([oa, ob, oc, od], [a, b, c, d]) => [oa * a + oc * b, ob * a + od * b, oa * c + oc * d,
  ob * c + od * d];

// An orientation as published: the picture mirrored in its own axes (none, h: left-right, v: top-bottom), then
// turned clockwise by 0, 90, 180 or 270 degrees (a mirror and a half turn being the other mirror, v comes with 0
// or 90).
function describe([a, b, c, d]) {
  const mirrored = a * d - b * c < 0;
  const degrees = (Math.round((Math.atan2(mirrored ? -b : b, mirrored ? -a : a) * 180) / Math.PI) + 360) % 360;
  if (!mirrored) return { rotation: degrees, flip: "none" };
  return degrees >= 180 ? { rotation: degrees - 180, flip: "v" } : { rotation: degrees, flip: "h" };
}

export class Viewport {
  // options: {source, header: {corner lines}, units, sensitivity, tool(): current tool, onCrosshair(point), onActivate()}
  constructor(options) {
    Object.assign(this, options);
    this.slot = { index: Math.floor(this.source.count / 2) };
    this.zoom = 1;
    this.pan = [0, 0];
    this.orientation = [1, 0, 0, 1]; // picture axes to screen axes (SCREEN_TURNS); a new view starts unturned
    this.invert = false;
    this.measurements ??= []; // shared by the views of a series (tools.js)
    this.onMeasured ??= () => this.draw();
    this.crosshair = null;
    this.canvas = el("canvas");
    this.corners = Object.fromEntries(["tl", "tr", "bl", "br"].map((c) => [c, el("div", `corner ${c}`)]));
    this.markers = Object.fromEntries(["left", "right", "top", "bottom"].map((m) => [m, el("div", `marker ${m}`)]));
    this.note = el("div", "note");
    this.note.hidden = true;
    this.slider = el("input", "slider");
    Object.assign(this.slider, { type: "range", min: 0, max: Math.max(0, this.source.count - 1), step: 1 });
    this.slider.setAttribute("aria-label", `${this.source.plane} slice`);
    this.slider.addEventListener("input", () => this.setSlot({ index: Number(this.slider.value) }));
    this.fields = {};
    for (const [corner, names] of Object.entries({ tl: ["patient", "patientId", "studyDate"],
      tr: ["series", "modality", "plane"], bl: ["slice", "position", "zoom"], br: ["window", "length"] })) {
      for (const name of names) this.corners[corner].append((this.fields[name] = field(name)));
    }
    this.stage = el("div", "stage", this.canvas, ...Object.values(this.corners), ...Object.values(this.markers), this.note);
    this.element = el("div", "viewport", this.stage, this.slider);
    this.element.dataset.plane = this.source.plane;
    this.element.dataset.series = this.source.seriesId;
    this.element.tabIndex = 0;
    for (const [name, value] of Object.entries(this.header)) this.fields[name].textContent = value;
    this.fields.plane.textContent = this.source.plane === "stack" ? "" : this.source.plane;
    this.listen();
    new ResizeObserver(() => this.draw()).observe(this.stage);
  }

  get index() {
    return this.slot.index ?? this.source.nearestIndex(this.slot.position);
  }

  setSlot(slot) {
    this.slot = slot;
    this.render();
  }

  scroll(delta) {
    const index = Math.min(this.source.count - 1, Math.max(0, this.index + delta));
    if (index !== this.slot.index) this.setSlot({ index });
  }

  setWindow(win) {
    this.win = win;
    this.render();
  }

  setInvert(invert) {
    this.invert = invert;
    this.draw();
  }

  // Fetch what the slot and window ask for, at most one request at a time: while one is out, the latest wish waits.
  async render() {
    if (this.loading) {
      this.pending = true;
      return;
    }
    this.loading = true;
    do {
      this.pending = false;
      const slot = this.slot;
      const win = this.win;
      try {
        const [bitmap, plane] = await Promise.all([this.source.picture(slot, win), this.source.geometry(slot)]);
        Object.assign(this, { bitmap, plane, shown: { slot, win } });
        this.say(null);
      } catch (error) {
        this.say(error.message);
      }
      this.draw();
    } while (this.pending);
    this.loading = false;
    this.onRendered?.(); // MPR: the other views redraw this one's reference line
    this.prefetchAround();
  }

  prefetchAround() {
    const tasks = [];
    const win = this.win;
    for (let step = 1; step <= PREFETCH_RADIUS; step += 1) {
      for (const index of [this.index + step, this.index - step]) {
        if (index < 0 || index >= this.source.count) continue;
        const slot = { index };
        tasks.push({ key: this.source.pictureKey(slot, win), load: () => {
          this.source.geometry(slot).catch(() => {});
          return this.source.picture(slot, win);
        } });
      }
    }
    prefetch(this, tasks);
  }

  say(text) {
    this.note.hidden = !text;
    this.note.textContent = text || "";
  }

  // Screen (CSS px in the canvas) = stage centre + pan + scale · orientation · (picture point − picture centre), as
  // a canvas matrix: x = a·u + c·v + e, y = b·u + d·v + f. Unturned, (e, f) is where the picture's corner (0, 0) is.
  transform() {
    const width = this.stage.clientWidth;
    const height = this.stage.clientHeight;
    const [a, b, c, d] = this.orientation;
    const { width: w, height: h } = this.bitmap;
    const [across, down] = a === 0 ? [h, w] : [w, h]; // a quarter turn shows the picture's width up and down
    const scale = Math.min(width / across, height / down) * this.zoom;
    return { scale, a: a * scale, b: b * scale, c: c * scale, d: d * scale,
      e: width / 2 + this.pan[0] - (scale * (a * w + c * h)) / 2,
      f: height / 2 + this.pan[1] - (scale * (b * w + d * h)) / 2 };
  }

  // The picture point at a page point (the transform's inverse: its 2×2 part is scale × a rotation or mirror).
  toPicture(event, t = this.transform()) {
    const box = this.canvas.getBoundingClientRect();
    const x = event.clientX - box.left - t.e;
    const y = event.clientY - box.top - t.f;
    const square = t.scale * t.scale;
    return [(t.a * x + t.b * y) / square, (t.c * x + t.d * y) / square];
  }

  // Rotate ("left", "right": a quarter turn) or flip ("h", "v") what is on screen, about the view's centre; the
  // picture is not asked for again.
  turn(how) {
    const o = SCREEN_TURNS[how];
    this.orientation = compose(o, this.orientation);
    this.pan = [o[0] * this.pan[0] + o[2] * this.pan[1], o[1] * this.pan[0] + o[3] * this.pan[1]];
    this.draw();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.stage.clientWidth;
    const height = this.stage.clientHeight;
    if (this.canvas.width !== Math.round(width * ratio) || this.canvas.height !== Math.round(height * ratio)) {
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    if (!this.bitmap) return;
    const t = this.transform();
    ctx.filter = this.invert ? "invert(1)" : "none";
    ctx.transform(t.a, t.b, t.c, t.d, t.e, t.f);
    ctx.drawImage(this.bitmap, 0, 0);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0); // the overlays are drawn upright, at their points' screen places
    ctx.filter = "none";
    const screen = ([u, v]) => [t.a * u + t.c * v + t.e, t.b * u + t.d * v + t.f];
    drawReferenceLines(this, ctx, screen); // under the crosshair, which lies on them while the views follow it
    if (this.crosshair && this.plane) {
      const [cx, cy] = screen(toPicture(this.plane, this.crosshair));
      ctx.strokeStyle = "rgba(255, 200, 0, 0.8)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(cx, 0); ctx.lineTo(cx, height); ctx.moveTo(0, cy); ctx.lineTo(width, cy);
      ctx.stroke();
    }
    drawMeasurements(this, ctx, screen);
    this.publish(t);
  }

  publish(t) {
    const { slot, win } = this.shown || {};
    const data = this.element.dataset;
    const index = slot?.index ?? this.source.nearestIndex(slot?.position);
    data.index = index;
    data.view = `${t.scale},${t.e},${t.f}`;
    data.transform = [t.a, t.b, t.c, t.d, t.e, t.f].join(",");
    Object.assign(data, describe(this.orientation));
    this.slider.value = index;
    this.fields.slice.textContent = `Slice ${index + 1} / ${this.source.count}`;
    if (this.plane) {
      data.position = this.plane.Position;
      this.fields.position.textContent = `Position ${round(this.plane.Position)} mm`;
      // the patient directions of the screen's right and down: the orientation's rows (its inverse is its transpose)
      const [a, b, c, d] = this.orientation;
      const along = (p, q) => this.plane.RowDirection.map((row, n) => p * row + q * this.plane.ColumnDirection[n]);
      const markers = orientationMarkers({ RowDirection: along(a, c), ColumnDirection: along(b, d) });
      for (const [side, node] of Object.entries(this.markers)) node.textContent = markers[side];
    } else {
      delete data.position;
      this.fields.position.textContent = "";
    }
    if (win) {
      data.window = `${win.center},${win.width}`;
      this.fields.window.textContent = `W ${round(win.width)} L ${round(win.center)}${this.invert ? " (inverted)" : ""}`;
    }
    this.fields.zoom.textContent = `Zoom ${Math.round(t.scale * 100)}%`;
    publishMeasurements(this);
  }

  zoomAt(factor, clientX, clientY) {
    if (!this.bitmap) return;
    const [u, v] = this.toPicture({ clientX, clientY });
    this.zoom = Math.min(40, Math.max(0.1, this.zoom * factor));
    const after = this.transform();
    const [x, y] = this.toPicture({ clientX, clientY }, after);
    // the picture point that was under the pointer goes back under it
    this.pan = [this.pan[0] + after.a * (x - u) + after.c * (y - v),
      this.pan[1] + after.b * (x - u) + after.d * (y - v)];
    this.draw();
  }

  fit() {
    this.zoom = 1;
    this.pan = [0, 0];
    this.draw();
  }

  listen() {
    const stage = this.stage;
    stage.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.onActivate(this);
      if (event.ctrlKey) this.zoomAt(Math.exp(-event.deltaY / 300), event.clientX, event.clientY);
      else if (event.deltaY) this.scroll(Math.sign(event.deltaY));
    }, { passive: false });
    stage.addEventListener("contextmenu", (event) => event.preventDefault());
    stage.addEventListener("pointerdown", (event) => this.press(event));
    this.element.addEventListener("focus", () => this.onActivate(this));
  }

  // A drag: right button windows, middle pans, left does what the tool says; a left click in MPR moves the crosshair.
  press(event) {
    if (!this.bitmap) return;
    event.preventDefault();
    this.element.focus();
    this.onActivate(this);
    const tool = event.button === 2 ? "window" : event.button === 1 ? "pan" : this.tool();
    const start = { x: event.clientX, y: event.clientY, win: this.win, pan: this.pan, zoom: this.zoom,
      at: this.toPicture(event) };
    let moved = false;
    const drawing = MEASURING.has(tool) && event.button === 0 ? startDrawing(this, tool, start.at) : null;
    this.stage.setPointerCapture(event.pointerId);
    const move = (e) => {
      const dx = e.clientX - start.x;
      const dy = e.clientY - start.y;
      moved ||= Math.hypot(dx, dy) > CLICK_SLOP;
      if (!moved) return;
      if (tool === "window") {
        this.setWindow({ center: start.win.center + dy * this.sensitivity,
          width: Math.max(1, start.win.width + dx * this.sensitivity) });
        this.onWindow(this.win);
      } else if (tool === "pan") {
        this.pan = [start.pan[0] + dx, start.pan[1] + dy];
        this.draw();
      } else if (tool === "zoom") {
        this.zoomAt(Math.exp(-dy / 200) * start.zoom / this.zoom, start.x, start.y);
      } else if (drawing) {
        drawing.move(this.toPicture(e));
      }
    };
    const up = (e) => {
      this.stage.removeEventListener("pointermove", move);
      this.stage.removeEventListener("pointerup", up);
      this.stage.removeEventListener("pointercancel", up);
      drawing?.up(this.toPicture(e), moved);
      if (!moved && event.button === 0 && !MEASURING.has(tool) && this.onCrosshair && this.plane) {
        this.onCrosshair(toPatient(this.plane, ...start.at), this);
      }
    };
    this.stage.addEventListener("pointermove", move);
    this.stage.addEventListener("pointerup", up);
    this.stage.addEventListener("pointercancel", up);
  }
}
