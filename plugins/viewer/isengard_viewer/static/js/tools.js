// The measuring tools: length, angle, ellipse and rectangle ROIs, probe. A measurement is kept as patient points
// (mm, from the plane geometry of the view it was drawn in), so every view of the series whose plane holds it (all
// its points within half a slice, or half the slab) draws it: the stack and the MPR axial view show the same
// length. A series without geometry keeps picture points on the slice they were drawn on (lengths in pixels).
// ROI statistics come from the plane's real-world values (the reslice API's format=npy: float32, NaN outside the
// volume), fetched once per plane; the probe asks the API for the value at its point.
import { getBuffer, getJson, query, viewerApi } from "./api.js";
import { distance, dot, sub, toPatient, toPicture } from "./geometry.js";

export const MEASURING = new Set(["measure", "angle", "ellipse", "rectangle", "probe"]);
const KINDS = { measure: "length", angle: "angle", ellipse: "ellipse", rectangle: "rectangle", probe: "probe" };
const COLOR = "#4cf";
const VALUE_PLANES = 8; // planes of values kept for ROI statistics
const planeValues = new Map(); // url -> Promise<{shape, values}>

const fixed = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : "–");

// A .npy file (NumPy's format, version 1 to 3): little-endian float32 in C order, shape from its header.
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.subarray(1, 6)) !== "NUMPY") throw new Error("not a .npy file");
  const wide = bytes[6] >= 2;
  const length = wide ? new DataView(buffer).getUint32(8, true) : new DataView(buffer).getUint16(8, true);
  const start = wide ? 12 : 10;
  const header = new TextDecoder().decode(bytes.subarray(start, start + length));
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) {
    throw new Error(`unexpected .npy header ${header.trim()}`);
  }
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  return { shape, values: new Float32Array(buffer.slice(start + length, start + length + 4 * count)) };
}

function valuesOf(view) {
  const url = view.source.url(view.shown.slot, { format: "npy" });
  if (!planeValues.has(url)) {
    const promise = getBuffer(url).then(parseNpy);
    promise.catch(() => planeValues.delete(url));
    planeValues.set(url, promise);
    while (planeValues.size > VALUE_PLANES) planeValues.delete(planeValues.keys().next().value);
  }
  return planeValues.get(url);
}

// Where a measurement is kept: patient mm, or picture points on the slice it was drawn on (no geometry).
const stored = (view, [u, v]) => (view.plane ? toPatient(view.plane, u, v) : [u, v]);
const onPicture = (view, m) => (m.pixels ? m.points : m.points.map((p) => toPicture(view.plane, p)));

function visible(view, m) {
  if (m.pixels) return !view.plane && m.slot === JSON.stringify(view.shown?.slot);
  if (!view.plane) return false;
  const half = Math.max(Math.abs(view.source.step || 0), Number(view.source.params?.slab) || 0,
    view.plane.PixelSpacing) / 2;
  return m.points.every((p) => Math.abs(dot(sub(p, view.plane.Origin), view.plane.Normal)) <= half + 1e-6);
}

export const shownIn = (view) => view.measurements.filter((m) => visible(view, m));

function angleOf([a, vertex, c]) {
  const u = sub(a, vertex);
  const w = sub(c, vertex);
  const cos = u.reduce((sum, x, n) => sum + x * w[n], 0) / (Math.hypot(...u) * Math.hypot(...w));
  return (Math.acos(Math.min(1, Math.max(-1, cos))) * 180) / Math.PI;
}

// Rectangle: its four corners; ellipse: its centre and the ends of its two half-axes.
function area(m) {
  const [a, b, c] = m.points;
  return m.kind === "rectangle" ? distance(a, b) * distance(b, c) : Math.PI * distance(a, b) * distance(a, c);
}

const complete = (m) => (m.kind === "angle" ? m.points.length === 3 : m.kind !== "probe" || m.value !== undefined);

function label(m) {
  const unit = m.pixels ? "px" : "mm";
  if (m.kind === "length") return `${fixed(distance(...m.points))} ${unit}`;
  if (m.kind === "angle") return m.points.length === 3 ? `${fixed(angleOf(m.points))}°` : "";
  if (m.kind === "probe") return `${fixed(m.value)} ${m.units}`;
  const size = `${fixed(area(m))} ${unit}²`;
  if (!m.stats) return size;
  return `${size} · mean ${fixed(m.stats.mean)} · SD ${fixed(m.stats.sd)} ${m.stats.units}`;
}

const TITLES = { length: "Length", angle: "Angle", ellipse: "Ellipse", rectangle: "Rectangle", probe: "Value" };

// The pixels of the plane the ROI was drawn on whose centres lie inside it: their count, mean and SD (population).
function statistics(view, m, { shape: [height, width], values }) {
  const [a, b, c] = onPicture(view, m);
  const ellipse = m.kind === "ellipse";
  const ru = Math.abs(b[0] - a[0]);
  const rv = Math.abs(c[1] - a[1]);
  const [umin, umax] = ellipse ? [a[0] - ru, a[0] + ru] : [Math.min(a[0], c[0]), Math.max(a[0], c[0])];
  const [vmin, vmax] = ellipse ? [a[1] - rv, a[1] + rv] : [Math.min(a[1], c[1]), Math.max(a[1], c[1])];
  const inside = [];
  for (let j = Math.max(0, Math.floor(vmin)); j < Math.min(height, Math.ceil(vmax)); j += 1) {
    for (let i = Math.max(0, Math.floor(umin)); i < Math.min(width, Math.ceil(umax)); i += 1) {
      const [u, v] = [i + 0.5, j + 0.5];
      const isIn = ellipse ? ((u - a[0]) / ru) ** 2 + ((v - a[1]) / rv) ** 2 <= 1
        : u >= umin && u <= umax && v >= vmin && v <= vmax;
      const value = values[j * width + i];
      if (isIn && !Number.isNaN(value)) inside.push(value);
    }
  }
  const mean = inside.reduce((sum, x) => sum + x, 0) / inside.length;
  const sd = Math.sqrt(inside.reduce((sum, x) => sum + (x - mean) ** 2, 0) / inside.length);
  return { count: inside.length, mean, sd, units: view.plane.Units };
}

function roiPoints(view, kind, [u0, v0], [u1, v1]) {
  const picture = kind === "rectangle" ? [[u0, v0], [u1, v0], [u1, v1], [u0, v1]]
    : [[(u0 + u1) / 2, (v0 + v1) / 2], [u1, (v0 + v1) / 2], [(u0 + u1) / 2, v1]];
  return picture.map((p) => stored(view, p));
}

function base(view, kind) {
  return view.plane ? { kind } : { kind, pixels: true, slot: JSON.stringify(view.shown.slot) };
}

async function probe(view, at) {
  if (!view.plane) return;
  const [x, y, z] = stored(view, at);
  try {
    const answer = await getJson(`${viewerApi(view.source.seriesId, "/value")}?${query({ x, y, z })}`);
    view.measurements.push({ kind: "probe", points: [[x, y, z]], value: answer.Value, units: answer.Units });
    view.onMeasured();
  } catch (error) {
    view.say(error.message);
  }
}

// Three clicks (end, vertex, end), or a drag from an end to the vertex and a click at the other end.
function angleStep(view, at) {
  let m = view.pendingAngle;
  if (!m || !view.measurements.includes(m)) {
    m = { ...base(view, "angle"), points: [] };
    view.pendingAngle = m;
    view.measurements.push(m);
  }
  m.points.push(stored(view, at));
  const count = m.points.length;
  return {
    move(end) {
      m.points[count] = stored(view, end);
      view.draw();
    },
    up(end, moved) {
      if (moved) m.points[count] = stored(view, end);
      else m.points.length = count;
      if (m.points.length < 3) return view.draw();
      m.points.length = 3;
      view.pendingAngle = null;
      return view.onMeasured();
    },
  };
}

// What a left press does with a measuring tool: {move(picture point), up(picture point, moved)}.
export function startDrawing(view, tool, at) {
  if (tool === "probe") return { move() {}, up: (end, moved) => moved || probe(view, at) };
  if (tool === "angle") return angleStep(view, at);
  const m = base(view, KINDS[tool]);
  return {
    move(end) {
      m.points = tool === "measure" ? [stored(view, at), stored(view, end)] : roiPoints(view, tool, at, end);
      if (!view.measurements.includes(m)) view.measurements.push(m);
      view.draw();
    },
    async up(end, moved) {
      if (!moved) return;
      view.onMeasured();
      if (tool === "measure" || m.pixels) return;
      try {
        m.stats = statistics(view, m, await valuesOf(view));
      } catch (error) {
        view.say(error.message);
      }
      view.onMeasured();
    },
  };
}

export function drawMeasurements(view, ctx, screen) {
  ctx.font = "13px sans-serif";
  ctx.lineWidth = 2;
  ctx.strokeStyle = ctx.fillStyle = COLOR;
  for (const m of shownIn(view)) {
    const points = onPicture(view, m).map(screen);
    ctx.beginPath();
    if (m.kind === "ellipse") {
      const [[cx, cy], [ux, uy], [wx, wy]] = points;
      ctx.ellipse(cx, cy, Math.hypot(ux - cx, uy - cy), Math.hypot(wx - cx, wy - cy), Math.atan2(uy - cy, ux - cx),
        0, 2 * Math.PI);
    } else if (m.kind === "probe") {
      const [[x, y]] = points;
      ctx.moveTo(x - 6, y); ctx.lineTo(x + 6, y); ctx.moveTo(x, y - 6); ctx.lineTo(x, y + 6);
    } else {
      points.forEach(([x, y], n) => (n ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (m.kind === "rectangle") ctx.closePath();
    }
    ctx.stroke();
    const [x, y] = m.kind === "ellipse" ? points[1] : points.at(-1);
    ctx.fillText(label(m), x + 6, y - 6);
  }
}

// The last complete measurement of each kind shown: data-length (mm), data-angle (degrees), data-roi (JSON: kind,
// area, mean, sd, count, units), data-probe (the value); the corner shows the last one's label.
export function publishMeasurements(view) {
  const data = view.element.dataset;
  const here = shownIn(view).filter(complete);
  const last = (...kinds) => here.filter((m) => kinds.includes(m.kind)).at(-1);
  const put = (name, value) => (value === undefined ? delete data[name] : (data[name] = value));
  const length = last("length");
  put("length", length && distance(...length.points));
  const angle = last("angle");
  put("angle", angle && angleOf(angle.points));
  const roi = last("ellipse", "rectangle");
  put("roi", roi && JSON.stringify({ kind: roi.kind, area: area(roi), ...roi.stats }));
  put("probe", last("probe")?.value);
  const latest = here.at(-1);
  view.fields.length.textContent = latest ? `${TITLES[latest.kind]} ${label(latest)}` : "";
}
