// The viewer page: ?series={id} shows a series (stack, or MPR 1x3 with a crosshair), ?study={id} lists the
// study's series to pick from. Every request is relative to /viewer/ (see api.js).
import { ApiError, getJson, rest, viewerApi } from "./api.js";
import { acquisitionPlane, dot } from "./geometry.js";
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
    const count = document.createElement("div");
    count.className = "muted";
    count.textContent = `${tag(series, "Modality")} · ${series.Instances.length} instance(s)`;
    link.append(`${tag(series, "SeriesNumber")} ${tag(series, "SeriesDescription") || "(no description)"}`.trim(), count);
    const item = document.createElement("li");
    item.append(link);
    return item;
  }));
  return all;
}

function activate(view) {
  state.active = view;
  for (const v of state.views) v.element.classList.toggle("active", v === view);
}

function makeView(series, source) {
  return new Viewport({
    source,
    header: series.header,
    win: series.window,
    sensitivity: series.sensitivity,
    tool: () => state.tool,
    onActivate: activate,
    onWindow: (win) => {
      series.window = win; // kept when the layout changes
      state.views.forEach((v) => v !== state.active && v.setWindow(win));
    },
    onCrosshair: series.mpr ? moveCrosshair : null,
  });
}

// A point clicked in one MPR view: the other views go to the planes through it, all draw the crosshair there.
function moveCrosshair(point, from) {
  for (const view of state.views) {
    view.crosshair = point;
    if (view === from) view.draw();
    else view.setSlot({ position: dot(point, view.source.normal) });
  }
}

function show(series, sources) {
  stopCine();
  series.mpr = sources.length > 1;
  state.views = sources.map((source) => makeView(series, source));
  $("#views").classList.toggle("mpr", series.mpr);
  $("#views").replaceChildren(...state.views.map((v) => v.element));
  for (const view of state.views) {
    view.invert = state.invert;
    view.render();
  }
  activate(state.views[0]);
  for (const button of document.querySelectorAll("[data-layout]")) {
    button.setAttribute("aria-pressed", String((button.dataset.layout === "mpr") === series.mpr));
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

async function openSeries(seriesId) {
  status("Loading the series…");
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
  };
  const stack = await stackSource(seriesId, volume);
  const problems = (volume.Problems || []).map((p) => p.Type);
  status(stack instanceof FrameSource
    ? "This series has no usable geometry (MissingGeometry): its frames are shown as a stack, without positions or MPR."
    : `${volume.Size.join(" × ")} ${volume.Units}${problems.length ? ` · ${problems.join(", ")}` : ""}`);
  state.series = info;
  state.stack = stack;
  state.mprSources = null;
  show(info, [stack]);
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
  show(info, state.mprSources);
}

function setWindow(win) {
  state.series.window = win;
  for (const view of state.views) view.setWindow(win);
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
      else show(state.series, [state.stack]);
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
  $("#cine").addEventListener("click", () => (state.cine ? stopCine() : startCine()));
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
  const seriesId = params.get("series");
  let studyId = params.get("study");
  try {
    if (!seriesId && !studyId) {
      status("Give a series (?series={id}) or a study (?study={id}) in the address.", true);
      return;
    }
    if (!studyId) studyId = (await getJson(rest(`/series/${encodeURIComponent(seriesId)}`))).ParentStudy;
    await listSeries(studyId, seriesId);
    if (seriesId) await openSeries(seriesId);
    else status("Pick a series.");
  } catch (error) {
    status(error.status === 404 ? `Unknown ${seriesId ? "series" : "study"}: ${seriesId || studyId}` : error.message, true);
  }
}

main();
