// The viewer page: ?series={id} shows a series (stack, or MPR 1x3 with a crosshair), ?study={id} lists the
// study's series to pick from. Every request is relative to /viewer/ (see api.js).
import { ApiError, getJson, orthancId, rest, viewerApi } from "./api.js";
import { acquisitionPlane, dot } from "./geometry.js";
import { attachLayers, openLayers, wireLayers } from "./layers.js";
import { GRIDS, ObliqueSource, gridCells, slabArgs, volumeCenter, wireSlab } from "./layout.js";
import { FrameSource, PlaneSource } from "./sources.js";
import { Viewport } from "./viewport.js";

// The reslice API's presets (docs/viewer.md, "Reslice"): center, width.
const PRESETS = { brain: [40, 80], subdural: [75, 215], stroke: [40, 40], lung: [-600, 1500],
  mediastinum: [50, 350], abdomen: [40, 400], liver: [60, 160], bone: [400, 1800] };
const PAGE_STEP = 10;

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const state = { tool: "window", views: [], active: null, invert: false, cine: null };

function status(text, isError = false) {
  $("#status").textContent = text;
  $("#status").classList.toggle("error", isError);
}

const tag = (resource, name) => resource?.MainDicomTags?.[name] ?? "";
const dicomDate = (text) => (/^\d{8}$/.test(text) ? `${text.slice(0, 4)}-${text.slice(4, 6)}-${text.slice(6)}` : text);

async function listSeries(studyId, current) {
  const all = await getJson(rest(`/studies/${encodeURIComponent(studyId)}/series?expand`));
  all.sort((a, b) => (Number(tag(a, "SeriesNumber")) || 0) - (Number(tag(b, "SeriesNumber")) || 0));
  $("#series-list").replaceChildren(...all.map((series) => {
    const link = document.createElement("a");
    link.href = `?${new URLSearchParams({ study: studyId, series: series.ID })}`;
    link.setAttribute("aria-current", String(series.ID === current));
    link.addEventListener("click", (event) => putInCell(event, series.ID));
    const count = document.createElement("div");
    count.className = "muted";
    count.textContent = `${tag(series, "Modality")} · ${series.Instances.length} instance(s)`;
    link.append(`${tag(series, "SeriesNumber")} ${tag(series, "SeriesDescription") || "(no description)"}`.trim(), count);
    const item = document.createElement("li");
    item.append(link);
    return item;
  }));
  state.studySeries = all;
  return all;
}

function activate(view) {
  state.active = view;
  for (const v of state.views) v.element.classList.toggle("active", v === view);
}

function makeView(series, source) {
  const view = new Viewport({
    source,
    header: series.header,
    win: series.window,
    sensitivity: series.sensitivity,
    tool: () => state.tool,
    onActivate: activate,
    onWindow: (win) => {
      series.window = win; // kept when the layout changes
      state.views.forEach((v) => v !== state.active && v.series === series && v.setWindow(win));
    },
    onCrosshair: series.mpr ? moveCrosshair : null,
    series,
    measurements: series.measurements, // in patient mm: every view of the series draws those its plane holds
    onMeasured: () => state.views.forEach((v) => v.draw()),
    references: () => (series.mpr ? state.views.filter((v) => v !== view) : []),
    onRendered: () => series.mpr && state.views.forEach((v) => v !== view && v.draw()),
  });
  return view;
}

// A point clicked in one MPR view: the other views go to the planes through it, all draw the crosshair there.
function moveCrosshair(point, from) {
  for (const view of state.views) {
    view.crosshair = point;
    if (view === from) view.draw();
    else view.setSlot({ position: dot(point, view.source.normal) });
  }
}

// cells: [{series, source, slot?}]; layout: stack, mpr or a grid (layout.js).
function show(cells, layout) {
  stopCine();
  state.series.mpr = layout === "mpr";
  state.views = cells.map(({ series, source, slot }) => Object.assign(makeView(series, source), slot && { slot }));
  state.views.forEach(attachLayers);
  $("#views").classList.toggle("mpr", state.series.mpr);
  $("#views").dataset.layout = layout;
  $("#views").replaceChildren(...state.views.map((v) => v.element));
  for (const view of state.views) {
    view.invert = state.invert;
    view.render();
  }
  activate(state.views[0]);
  for (const button of document.querySelectorAll("[data-layout]")) {
    button.setAttribute("aria-pressed", String(button.dataset.layout === layout));
  }
}

async function stackSource(seriesId, volume) {
  if (volume.Origin) {
    try {
      return await new PlaneSource(seriesId, acquisitionPlane(volume)).open(volume);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 409) throw error;
    }
  }
  return new FrameSource(seriesId, volume.Slices);
}

// A series' description for the views (header, window, measurements) and its stack source.
async function describeSeries(seriesId) {
  const [series, study, volume] = await Promise.all([
    getJson(rest(`/series/${encodeURIComponent(seriesId)}`)),
    getJson(rest(`/series/${encodeURIComponent(seriesId)}/study`)),
    getJson(viewerApi(seriesId, "/volume")),
  ]);
  const patient = study.PatientMainDicomTags || {};
  const range = volume.Range ? volume.Range[1] - volume.Range[0] : volume.DefaultWindow.Width * 4;
  const info = {
    id: seriesId,
    volume,
    header: { patient: (patient.PatientName || "").replaceAll("^", " ").trim(), patientId: patient.PatientID || "",
      studyDate: dicomDate(tag(study, "StudyDate")), series: tag(series, "SeriesDescription"),
      modality: [tag(series, "Modality"), tag(series, "SeriesNumber") && `#${tag(series, "SeriesNumber")}`].filter(Boolean).join(" ") },
    window: { center: volume.DefaultWindow.Center, width: volume.DefaultWindow.Width },
    sensitivity: Math.max(range / 1000, 0.001),
    measurements: [],
  };
  return { info, stack: await stackSource(seriesId, volume) };
}

// The other series of a grid, each loaded once.
function loadSeries(seriesId) {
  state.loaded ||= new Map();
  if (!state.loaded.has(seriesId)) state.loaded.set(seriesId, describeSeries(seriesId));
  return state.loaded.get(seriesId);
}

async function openSeries(seriesId) {
  status("Loading the series…");
  const { info, stack } = await describeSeries(seriesId);
  const volume = info.volume;
  const problems = (volume.Problems || []).map((p) => p.Type);
  status(stack instanceof FrameSource
    ? "This series has no usable geometry (MissingGeometry): its frames are shown as a stack, without positions or MPR."
    : `${volume.Size.join(" × ")} ${volume.Units}${problems.length ? ` · ${problems.join(", ")}` : ""}`);
  state.series = info;
  state.stack = stack;
  state.mprSources = null;
  show([{ series: info, source: stack }], "stack");
}

async function showGrid(layout) {
  const others = (state.studySeries || []).map((series) => series.ID).filter((id) => id !== state.series.id);
  show(await gridCells({ info: state.series, stack: state.stack }, others, GRIDS[layout], loadSeries), layout);
}

// A series clicked in the list while a grid is shown goes into the active cell instead of opening the page
// (a modifier key still opens the link); the other cells stay. A series without a volume (RT...) is refused.
async function putInCell(event, seriesId) {
  const layout = $("#views").dataset.layout;
  if (!(layout in GRIDS) || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  let chosen;
  try {
    chosen = seriesId === state.series.id ? { info: state.series, stack: state.stack } : await loadSeries(seriesId);
  } catch (error) {
    status(`This series cannot be shown in a cell: ${error.message}`, true);
    return;
  }
  if ($("#views").dataset.layout !== layout) return; // the layout changed meanwhile
  const at = Math.max(0, state.views.indexOf(state.active));
  const cells = state.views.map((view) => ({ series: view.series, source: view.source, slot: view.slot }));
  cells[at] = { series: chosen.info, source: chosen.stack };
  show(cells, layout);
  activate(state.views[at]);
}

// MPR needs the volume in space; the API's 409 says why a series cannot (no geometry, a single slice).
async function showMpr() {
  const info = state.series;
  if (!info) return;
  try {
    state.mprSources ||= await Promise.all(["axial", "coronal", "sagittal"]
      .map((plane) => new PlaneSource(info.id, plane).open(info.volume)));
  } catch (error) {
    status(`MPR is not available for this series: ${error.message}`, true);
    return;
  }
  // Turned coronal and sagittal planes (oblique) pass through the crosshair, which stays where it was.
  const degrees = Number($("#rotate").value) || 0;
  const crosshair = state.series.mpr ? state.views.find((view) => view.crosshair)?.crosshair : null;
  const sources = state.mprSources.map((source) => (degrees && source.plane !== "axial"
    ? new ObliqueSource(source, degrees, crosshair || volumeCenter(info.volume)).open(info.volume) : source));
  for (const source of sources) source.params = slabArgs();
  const through = (source) => crosshair && { position: dot(crosshair, source.normal) };
  show(sources.map((source) => ({ series: info, source, slot: through(source) })), "mpr");
  if (crosshair) state.views.forEach((view) => (view.crosshair = crosshair));
}

// An ROI's centroid (layers.js): the views of the series go to the slice through it, MPR views (between slices
// too) with the crosshair there; the views of other series in a grid stay.
function jumpTo(point) {
  if (state.series.mpr) {
    moveCrosshair(point, null);
    return;
  }
  for (const view of state.views) {
    const { normal, seriesId } = view.source;
    if (normal && seriesId === state.series.id) view.setSlot({ index: view.source.nearestIndex(dot(point, normal)) });
  }
}

// A preset: for the active view's series (a grid's other series keep theirs).
function setWindow(win) {
  const series = state.active?.series ?? state.series;
  series.window = win;
  for (const view of state.views) if (view.series === series) view.setWindow(win);
}

function stopCine() {
  clearInterval(state.cine);
  state.cine = null;
  $("#cine").textContent = "Play";
  $("#cine").setAttribute("aria-pressed", "false");
}

function startCine() {
  const step = () => {
    const view = state.active;
    if (view) view.setSlot({ index: (view.index + 1) % view.source.count });
  };
  state.cine = setInterval(step, 1000 / Number($("#fps").value));
  $("#cine").textContent = "Pause";
  $("#cine").setAttribute("aria-pressed", "true");
}

function wireToolbar() {
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.addEventListener("click", () => {
      state.tool = button.dataset.tool;
      for (const b of document.querySelectorAll("[data-tool]")) b.setAttribute("aria-pressed", String(b === button));
    });
  }
  for (const button of document.querySelectorAll("[data-layout]")) {
    button.addEventListener("click", () => {
      if (!state.series) return;
      if (button.dataset.layout === "mpr") showMpr();
      else if (button.dataset.layout in GRIDS) showGrid(button.dataset.layout);
      else show([{ series: state.series, source: state.stack }], "stack");
    });
  }
  for (const [name, [center, width]] of Object.entries(PRESETS)) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = `${name} (${center}, ${width})`;
    $("#preset").append(option);
  }
  $("#preset").addEventListener("change", () => {
    const preset = PRESETS[$("#preset").value];
    if (preset && state.series) setWindow({ center: preset[0], width: preset[1] });
    $("#preset").value = "";
  });
  $("#invert").addEventListener("click", () => {
    state.invert = !state.invert;
    $("#invert").setAttribute("aria-pressed", String(state.invert));
    for (const view of state.views) view.setInvert(state.invert);
  });
  const zoomActive = (factor) => {
    const view = state.active;
    if (!view) return;
    const box = view.stage.getBoundingClientRect();
    view.zoomAt(factor, box.left + box.width / 2, box.top + box.height / 2);
  };
  $("#zoom-in").addEventListener("click", () => zoomActive(1.25));
  $("#zoom-out").addEventListener("click", () => zoomActive(0.8));
  $("#fit").addEventListener("click", () => state.active?.fit());
  for (const button of document.querySelectorAll("[data-turn]")) {
    button.addEventListener("click", () => state.active?.turn(button.dataset.turn));
  }
  $("#clear-measurements").addEventListener("click", () => {
    for (const view of state.views) view.measurements.length = 0; // the series' shared list
    for (const view of state.views) view.draw();
  });
  $("#cine").addEventListener("click", () => (state.cine ? stopCine() : startCine()));
  wireSlab(() => {
    for (const source of state.mprSources || []) source.params = slabArgs();
    if (!state.series?.mpr) return;
    for (const view of state.views) {
      view.source.params = slabArgs();
      view.render();
    }
  });
  $("#rotate").addEventListener("change", () => state.series?.mpr && showMpr());
  $("#fps").addEventListener("change", () => state.cine && (stopCine(), startCine()));
  document.addEventListener("keydown", (event) => {
    const view = state.active;
    if (!view || ["INPUT", "SELECT"].includes(event.target.tagName)) return;
    const moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: PAGE_STEP, PageUp: -PAGE_STEP,
      Home: -Infinity, End: Infinity };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const target = Math.min(view.source.count - 1, Math.max(0, view.index + moves[event.key]));
    view.scroll(target - view.index);
  });
}

async function main() {
  wireToolbar();
  wireLayers(jumpTo);
  let seriesId = params.get("series");
  let studyId = params.get("study");
  try {
    if (!seriesId && !studyId) {
      status("Give a series (?series={id}) or a study (?study={id}) in the address.", true);
      return;
    }
    // Orthanc ids, or DICOM UIDs as viewers launched from a RIS or a worklist give them (?study=UID&series=UID)
    if (seriesId) seriesId = await orthancId(seriesId, "Series");
    if (studyId) studyId = await orthancId(studyId, "Study");
    if (!studyId) studyId = (await getJson(rest(`/series/${encodeURIComponent(seriesId)}`))).ParentStudy;
    const studySeries = await listSeries(studyId, seriesId);
    if (seriesId) await openSeries(seriesId);
    else status("Pick a series.");
    if (state.stack instanceof PlaneSource) {
      await openLayers({ series: state.series, studySeries, onJump: jumpTo,
        onChange: () => state.views.forEach((view) => view.render()) });
    }
  } catch (error) {
    status(error.status === 404 ? `Unknown ${seriesId ? "series" : "study"}: ${seriesId || studyId}` : error.message, true);
  }
}

main();
