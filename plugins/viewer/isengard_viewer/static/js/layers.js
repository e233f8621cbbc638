// Layers over the views (docs/viewer.md, "Layers"): another series of the study fused on this one (a PET on its
// CT), an RT Structure Set's ROIs and an RT Dose's isodose lines or colour wash. The server draws them into the
// pictures: this module finds what the study holds in the series' frame of reference (the API refuses anything
// else, there is no registration), keeps the panel's choices, and turns them into the reslice arguments every
// PlaneSource adds to its picture requests. It also reads the fused series' value (SUV) under the pointer.
import { getJson, query, rest, viewerApi } from "./api.js";
import { acquisitionPlane, toPatient } from "./geometry.js";

// Modalities without a volume of pixels: never offered for fusion (RT objects have their own controls).
const NOT_IMAGES = new Set(["RTSTRUCT", "RTDOSE", "RTPLAN", "RTRECORD", "SR", "SEG", "KO", "PR", "REG", "DOC"]);
const LEVELS = /^\s*\d+(\.\d+)?%?(\s*,\s*\d+(\.\d+)?%?)*\s*$/; // isodoses=: Gy, or % of the reference dose
const DOSE = /^\s*\d*\.?\d+\s*$/; // prescription=: Gy

const $ = (selector) => document.querySelector(selector);
const tag = (resource, name) => resource?.MainDicomTags?.[name] ?? "";

const state = {
  seriesId: null,
  overlays: [], // volume descriptions of the series in the same frame of reference
  overlay: null,
  structures: [], // {ID, StructureSetLabel, ROIs: [{Number, Name, Color, shown, centroid}]}
  structure: null,
  doses: [], // {ID, label}
  dose: null,
  plane: null, // the series' acquisition plane, for the isodose legend's format=json
  legends: 0, // legend requests made: only the latest one's answer is shown
  onChange: () => {},
};

function el(tagName, className, ...children) {
  const node = document.createElement(tagName);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

// The fused series' window (overlayWindow=C,W) from the lower and upper bounds shown, or null when they are none.
function overlayWindow() {
  const [low, high] = [$("#overlay-low").valueAsNumber, $("#overlay-high").valueAsNumber]; // NaN when not a number
  return high > low ? `${(low + high) / 2},${high - low}` : null;
}

// The reference dose for % levels: empty (the grid's maximum, as the API's default), or a positive number of Gy.
const prescriptionValid = (text) => !text.trim() || (DOSE.test(text) && Number(text) > 0);

// The dose's arguments: none unless lines or the wash are on; a malformed field is left out (the API's default).
function doseArgs() {
  const isodoses = $("#isodoses").checked && LEVELS.test($("#isodose-levels").value);
  if (!state.dose || !(isodoses || $("#dosewash").checked)) return {};
  const args = { rtdose: state.dose.ID };
  if (isodoses) args.isodoses = $("#isodose-levels").value.replaceAll(" ", "");
  if ($("#dosewash").checked) args.dosewash = 1;
  const prescription = $("#prescription").value;
  if (prescription.trim() && prescriptionValid(prescription)) args.prescription = Number(prescription);
  return args;
}

// The reslice arguments of the layers chosen for a series' pictures (none for another series).
export function layerArgs(seriesId) {
  if (seriesId !== state.seriesId) return {};
  const args = {};
  if (state.overlay) {
    Object.assign(args, { overlay: state.overlay.ID, colormap: $("#colormap").value, opacity: $("#opacity").value });
    const bounds = overlayWindow();
    if (bounds) args.overlayWindow = bounds;
  }
  const rois = state.structure?.ROIs.filter((roi) => roi.shown).map((roi) => roi.Number) ?? [];
  if (rois.length) Object.assign(args, { rtstruct: state.structure.ID, rois: rois.join(",") });
  return Object.assign(args, doseArgs());
}

// The isodose legend: the levels drawn as the API answers them (format=json with the dose's arguments), each its
// line's colour, Gy and % of the reference; hidden without lines. Only the latest request's answer is shown.
async function showLegend() {
  const args = doseArgs();
  const asked = (state.legends += 1);
  let isodoses = [];
  let units = "Gy";
  if (args.isodoses) {
    try {
      const url = `${viewerApi(state.seriesId, `/reslice/${state.plane}`)}?${query({ format: "json", ...args })}`;
      const dose = (await getJson(url)).Layers.RtDose;
      isodoses = dose.Isodoses;
      if (dose.Units && dose.Units !== "GY") units = dose.Units;
    } catch {
      isodoses = []; // the views say what went wrong
    }
  }
  if (asked !== state.legends) return;
  const short = (value) => String(Number(value.toFixed(1)));
  $("#isodose-legend").replaceChildren(...isodoses.map(({ Level, Percent, Color }) => el("li", null, swatch(Color),
    `${short(Level)} ${units}${Percent === null ? "" : ` (${short(Percent)}%)`}`)));
  $("#isodose-legend").hidden = !isodoses.length;
}

// A structure's centroid in patient mm: each closed planar contour weighs by its area (slices are equally thick),
// its centroid by a fan of triangles from its first point; open contours and points count as their mean point.
export function centroid(contours) {
  let weight = 0;
  const sum = [0, 0, 0];
  const loose = [];
  for (const { GeometricType: type, Points: points } of contours) {
    if (type !== "CLOSED_PLANAR" || points.length < 3) {
      loose.push(...points);
      continue;
    }
    const p0 = points[0];
    const triangles = [];
    const normal = [0, 0, 0];
    for (let i = 1; i + 1 < points.length; i += 1) {
      const a = points[i].map((v, n) => v - p0[n]);
      const b = points[i + 1].map((v, n) => v - p0[n]);
      const cross = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
      cross.forEach((v, n) => (normal[n] += v));
      triangles.push({ cross, middle: p0.map((v, n) => (v + points[i][n] + points[i + 1][n]) / 3) });
    }
    const size = Math.hypot(...normal);
    if (!size) {
      loose.push(...points);
      continue;
    }
    for (const { cross, middle } of triangles) {
      const area = (cross[0] * normal[0] + cross[1] * normal[1] + cross[2] * normal[2]) / size; // signed, / 2 below
      weight += area;
      middle.forEach((v, n) => (sum[n] += v * area));
    }
  }
  if (weight) return sum.map((v) => v / weight);
  if (!loose.length) return null;
  return [0, 1, 2].map((n) => loose.reduce((total, point) => total + point[n], 0) / loose.length);
}

function swatch([r, g, b]) {
  const canvas = el("canvas", "swatch");
  canvas.width = canvas.height = 12;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
  ctx.fillRect(0, 0, 12, 12);
  return canvas;
}

function listRois(onJump) {
  const rois = state.structure?.ROIs ?? [];
  $("#rois").replaceChildren(...rois.map((roi) => {
    const box = el("input");
    Object.assign(box, { type: "checkbox", checked: roi.shown });
    box.addEventListener("change", () => {
      roi.shown = box.checked;
      state.onChange();
    });
    const jump = el("button", "jump", "Jump");
    jump.type = "button";
    jump.title = `Go to the centroid of ${roi.Name}`;
    jump.disabled = !roi.centroid;
    jump.addEventListener("click", () => onJump(roi.centroid));
    const item = el("li", null, el("label", null, box, swatch(roi.Color), ` ${roi.Name}`), jump);
    item.dataset.roi = roi.Number;
    return item;
  }));
}

function options(select, items, label, none) {
  select.replaceChildren(...(none ? [el("option", null, none)] : []), ...items.map((item) => {
    const option = el("option", null, label(item));
    option.value = item.ID;
    return option;
  }));
  if (none) select.firstChild.value = "";
}

const headerOf = (instanceId) => getJson(rest(`/instances/${encodeURIComponent(instanceId)}/simplified-tags`));

// An image series in the frame of reference: its volume description (units, window), or null. The first
// instance's header is read first, so that the server loads no volume of a series in another frame.
async function overlayCandidate(series, frame) {
  try {
    if ((await headerOf(series.Instances[0])).FrameOfReferenceUID !== frame) return null;
    return { ...(await getJson(viewerApi(series.ID, "/volume"))), series };
  } catch {
    return null; // not a volume (colour images, a single frame without geometry...)
  }
}

// What the study holds in the series' frame of reference. A candidate that cannot be read is left out.
async function findLayers(seriesId, frame, studySeries) {
  const others = studySeries.filter((series) => series.ID !== seriesId && series.Instances.length);
  const modality = (series) => tag(series, "Modality");
  const volumes = Promise.all(others.filter((s) => !NOT_IMAGES.has(modality(s)))
    .map((s) => overlayCandidate(s, frame)));
  const instances = (name) => others.filter((s) => modality(s) === name).flatMap((s) => s.Instances);
  const structures = Promise.all(instances("RTSTRUCT").map((id) =>
    getJson(`api/instances/${encodeURIComponent(id)}/rtstruct`).catch(() => null)));
  const doses = Promise.all(instances("RTDOSE").map((id) =>
    headerOf(id).then((tags) => ({ ...tags, ID: id }), () => null)));
  const first = (volume) => (volume.Modality === "PT" ? 0 : 1);
  const number = (volume) => Number(tag(volume.series, "SeriesNumber")) || 0;
  state.overlays = (await volumes).filter((v) => v?.FrameOfReferenceUID === frame)
    .sort((a, b) => first(a) - first(b) || number(a) - number(b));
  state.structures = (await structures).filter(Boolean).map((set) => ({
    ...set,
    ROIs: set.ROIs.filter((roi) => roi.FrameOfReferenceUID === frame)
      .map((roi) => ({ ...roi, shown: true, centroid: centroid(roi.Contours) })),
  })).filter((set) => set.ROIs.length);
  state.doses = (await doses).filter((dose) => dose?.FrameOfReferenceUID === frame);
}

// Fill the panel for a series shown with reslices; onChange() redraws the views, onJump(point) moves them.
export async function openLayers({ series, studySeries, onChange, onJump }) {
  Object.assign(state, { seriesId: series.id, onChange, overlay: null, structure: null, dose: null,
    plane: acquisitionPlane(series.volume) });
  $("#overlay-window").hidden = true;
  const frame = series.volume.FrameOfReferenceUID;
  if (frame) await findLayers(series.id, frame, studySeries);
  $("#layers").hidden = !(state.overlays.length + state.structures.length + state.doses.length); // no room taken
  $("#fusion-controls").hidden = !state.overlays.length;
  const number = (v) => tag(v.series, "SeriesNumber") && `#${tag(v.series, "SeriesNumber")}`;
  options($("#fusion"), state.overlays, (v) => [v.Modality, number(v), tag(v.series, "SeriesDescription"),
    v.Units && `(${v.Units})`].filter(Boolean).join(" "), "None");
  $("#rt-controls").hidden = !state.structures.length;
  options($("#rtstruct"), state.structures, (set) => set.StructureSetLabel || set.SOPInstanceUID, "None");
  state.structure = state.structures[0] ?? null;
  $("#rtstruct").value = state.structure?.ID ?? "";
  listRois(onJump);
  $("#dose-controls").hidden = !state.doses.length;
  options($("#rtdose"), state.doses, (dose) => [dose.DoseSummationType, dose.DoseType, dose.DoseUnits]
    .filter(Boolean).join(" ") || dose.SOPInstanceUID);
  state.dose = state.doses[0] ?? null;
  showLegend();
  $("#layers").dataset.ready = "true";
  if (state.structure) onChange();
}

// The panel's controls, wired once; listRois wires the ROI rows it makes.
export function wireLayers(onJump) {
  const changed = () => state.onChange();
  const doseChanged = () => {
    changed();
    showLegend();
  };
  $("#fusion").addEventListener("change", () => {
    state.overlay = state.overlays.find((v) => v.ID === $("#fusion").value) ?? null;
    for (const node of document.querySelectorAll('[data-field="overlay-value"]')) node.textContent = "";
    $("#overlay-window").hidden = !state.overlay;
    if (state.overlay) { // its default window, as lower and upper bounds in its units
      const { Center: center, Width: width } = state.overlay.DefaultWindow;
      $("#overlay-units").textContent = state.overlay.Units;
      $("#overlay-low").value = Number((center - width / 2).toPrecision(4));
      $("#overlay-high").value = Number((center + width / 2).toPrecision(4));
      for (const id of ["#overlay-low", "#overlay-high"]) $(id).setAttribute("aria-invalid", "false");
    }
    changed();
  });
  for (const id of ["#overlay-low", "#overlay-high"]) {
    $(id).addEventListener("change", () => {
      const valid = overlayWindow() !== null;
      for (const bound of ["#overlay-low", "#overlay-high"]) $(bound).setAttribute("aria-invalid", String(!valid));
      if (valid) changed();
    });
  }
  $("#rtstruct").addEventListener("change", () => {
    state.structure = state.structures.find((set) => set.ID === $("#rtstruct").value) ?? null;
    listRois(onJump);
    changed();
  });
  $("#rtdose").addEventListener("change", () => {
    state.dose = state.doses.find((dose) => dose.ID === $("#rtdose").value) ?? null;
    doseChanged();
  });
  for (const [id, valid] of [["#isodose-levels", (text) => LEVELS.test(text)], ["#prescription", prescriptionValid]]) {
    $(id).addEventListener("change", () => {
      $(id).setAttribute("aria-invalid", String(!valid($(id).value)));
      if (valid($(id).value)) doseChanged();
    });
  }
  for (const id of ["#colormap", "#opacity", "#dosewash"]) $(id).addEventListener("change", changed);
  $("#isodoses").addEventListener("change", doseChanged);
}

// The fused series' value at the pointer, in a corner of the view (and data-overlay-value): one request at a time,
// the latest point waiting while one is out.
export function attachLayers(view) {
  const readout = el("div", "field");
  readout.dataset.field = "overlay-value";
  view.corners.tr.append(readout);
  const probe = { point: null, busy: false, inside: false };
  const write = (text, value) => {
    readout.textContent = text;
    if (value === undefined) delete view.element.dataset.overlayValue;
    else view.element.dataset.overlayValue = value;
  };
  const read = async () => {
    probe.busy = true;
    while (probe.point && state.overlay) {
      const [x, y, z] = probe.point;
      const overlay = state.overlay;
      probe.point = null;
      try {
        const found = await getJson(viewerApi(overlay.ID, `/value?${query({ x, y, z })}`));
        if (probe.inside && overlay === state.overlay) {
          write(`${overlay.Modality} ${found.Value.toFixed(2)} ${found.Units}`, found.Value);
        }
      } catch {
        write(""); // outside the fused volume: a 400
      }
    }
    probe.busy = false;
  };
  view.stage.addEventListener("pointermove", (event) => {
    if (!state.overlay || !view.plane || !view.bitmap || view.source.seriesId !== state.seriesId) return;
    probe.inside = true;
    probe.point = toPatient(view.plane, ...view.toPicture(event));
    if (!probe.busy) read();
  });
  view.stage.addEventListener("pointerleave", () => {
    probe.inside = false;
    probe.point = null;
    write("");
  });
}
