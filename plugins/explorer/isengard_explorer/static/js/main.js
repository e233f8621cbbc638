// Entry point: maps each hash route to its view, keeps the sidebar in step, reports errors in the page.
import { api } from "./api.js";
import { hasPlugin } from "./capabilities.js";
import { h, replace } from "./dom.js";
import { formatSize } from "./format.js";
import { matchRoute, parseHash } from "./router.js";
import { renderInstance } from "./views/instance.js";
import { renderJob, renderJobs } from "./views/jobs.js";
import { renderLua } from "./views/lua.js";
import { renderPatient, renderPatients } from "./views/patients.js";
import { renderRetrieve } from "./views/retrieve.js";
import { renderSeries } from "./views/series.js";
import { renderStudies } from "./views/studies.js";
import { renderStudy } from "./views/study.js";
import { renderSystem } from "./views/system.js";
import { renderUpload } from "./views/upload.js";

const routes = [
  ["/studies", renderStudies],
  ["/patients", renderPatients],
  ["/patient/:id", renderPatient],
  ["/study/:id", renderStudy],
  ["/series/:id", renderSeries],
  ["/instance/:id", renderInstance],
  ["/upload", renderUpload],
  ["/retrieve", renderRetrieve],
  ["/jobs", renderJobs],
  ["/job/:id", renderJob],
  ["/lua", renderLua],
  ["/system", renderSystem],
];

// The sidebar entry of pages that have none: resource pages belong to Studies, where browsing starts.
const SECTIONS = { patient: "studies", study: "studies", series: "studies", instance: "studies", job: "jobs" };

const main = document.getElementById("main");
let current = null; // AbortController of the view on screen: views stop polling when it aborts

async function showRoute() {
  const { path, params } = parseHash(window.location.hash);
  const first = path.split("/")[1];
  const section = SECTIONS[first] || first;
  for (const a of document.querySelectorAll(".nav a")) a.classList.toggle("active", a.dataset.section === section);
  if (current) current.abort();
  current = new AbortController();
  const { signal } = current;
  const found = matchRoute(routes, path);
  replace(main, h("p", { class: "muted loading" }, "Loading…"));
  if (!found) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, `No page at ${path}.`));
    return;
  }
  try {
    await found.render(main, found.args, params, signal);
  } catch (error) {
    if (signal.aborted) return;
    replace(main, h("h1", {}, "Error"), h("p", { class: "error" }, error.message));
  }
}

async function refreshStatistics() {
  const stats = await api.get("/statistics");
  replace(
    document.getElementById("sidebar-stats"),
    h("dt", {}, "Patients"), h("dd", {}, stats.CountPatients),
    h("dt", {}, "Studies"), h("dd", {}, stats.CountStudies),
    h("dt", {}, "Series"), h("dd", {}, stats.CountSeries),
    h("dt", {}, "Instances"), h("dd", {}, stats.CountInstances),
    h("dt", {}, "Disk"), h("dd", {}, formatSize(stats.TotalDiskSize)),
  );
}

window.addEventListener("hashchange", showRoute);
window.addEventListener("explorer:changed", () => refreshStatistics().catch(() => {}));
// The Lua console's link shows only where its plugin is loaded (the page itself says when scripts are disabled).
async function showPluginLinks() {
  document.getElementById("nav-lua").hidden = !(await hasPlugin("lua"));
}

showRoute();
refreshStatistics().catch(() => {});
showPluginLinks().catch(() => {});
