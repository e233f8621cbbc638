// The jobs of the server (/jobs?expand), refreshed while the page is open, with pause/resume/cancel/resubmit;
// a job's own page shows all of /jobs/{id} (its Content, errors, times) and its output when it has one.
import { api, url } from "../api.js";
import { h, replace } from "../dom.js";
import { formatTimestamp } from "../format.js";
import { progressBar } from "../widgets/jobwatch.js";
import { dataTable } from "../widgets/table.js";
import { notify } from "../widgets/toast.js";

const REFRESH_MS = 2000;
const FINAL = ["Success", "Failure"];

// Which commands make sense in each state (Orthanc Book, "Jobs engine")
const COMMANDS = {
  Pending: ["pause", "cancel"],
  Running: ["pause", "cancel"],
  Paused: ["resume", "cancel"],
  Retry: ["cancel"],
  Failure: ["resubmit"],
  Success: [],
};

// The jobs whose output is a file, under /jobs/{id}/{key} once they succeed (the archive routes' jobs).
const OUTPUTS = { Archive: ["archive", "Download the ZIP"], Media: ["archive", "Download the DICOMDIR ZIP"] };

function commandButtons(job, after) {
  return (COMMANDS[job.State] || []).map((name) => h("button", { class: "button small", onclick: async () => {
    try {
      await api.post(`/jobs/${job.ID}/${name}`, {});
      await after();
    } catch (error) {
      notify(error.message, "error");
    }
  } }, name));
}

function stateChip(job) {
  return h("span", { class: `state state-${job.State.toLowerCase()}` }, job.State);
}

// Re-draw every REFRESH_MS while the view is on screen and keepGoing() (a finished job may be resubmitted).
function refreshing(draw, signal, keepGoing = () => true) {
  const timer = setInterval(() => {
    if (keepGoing()) draw().catch(() => {});
  }, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

export async function renderJobs(main, _args, _params, signal) {
  const holder = h("div", { class: "card table-card" });
  replace(main, h("header", { class: "page-header" }, h("h1", {}, "Jobs"),
    h("span", { class: "muted" }, "Refreshed every 2 s · click a job for its details")), holder);

  async function draw() {
    const jobs = await api.get("/jobs?expand");
    replace(holder, dataTable({
      columns: [
        { key: "Type", label: "Type", value: (j) => j.Type },
        { key: "State", label: "State", value: (j) => j.State, render: stateChip },
        { key: "Progress", label: "Progress", value: (j) => j.Progress,
          render: (j) => [progressBar(j.Progress), ` ${j.Progress}%`] },
        { key: "CreationTime", label: "Created", value: (j) => j.CreationTime,
          render: (j) => formatTimestamp(j.CreationTime) },
        { key: "Error", label: "Error", value: (j) => (j.ErrorCode ? j.ErrorDescription : "") },
        { key: "ID", label: "", sortable: false, value: (j) => j.ID, render: (j) => commandButtons(j, draw) },
      ],
      rows: jobs,
      rowHref: (j) => `#/job/${j.ID}`,
      sort: { key: "CreationTime", dir: "desc" },
      empty: "No job yet: jobs are created by sending, archiving, modifying, retrieving…",
    }));
  }

  await draw();
  refreshing(draw, signal);
}

function facts(job) {
  const pairs = [
    ["ID", h("code", {}, job.ID)],
    ["Type", job.Type],
    ["State", stateChip(job)],
    ["Progress", [progressBar(job.Progress), ` ${job.Progress}%`]],
    ["Priority", job.Priority],
    ["Error code", job.ErrorCode],
    ["Error", job.ErrorDescription],
    ["Error details", job.ErrorDetails],
    ["Created", formatTimestamp(job.CreationTime)],
    ["Completed", formatTimestamp(job.CompletionTime)],
    ["Estimated end", formatTimestamp(job.EstimatedTimeOfArrival)],
    ["Runtime", job.EffectiveRuntime === undefined ? "" : `${job.EffectiveRuntime} s`],
  ];
  return h("dl", { class: "main-tags", id: "job-facts" },
    pairs.filter(([, v]) => v !== "" && v !== undefined && v !== null)
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function output(job) {
  const known = OUTPUTS[job.Type];
  if (!known || job.State !== "Success") return null;
  const [key, label] = known;
  return h("a", { class: "button", href: url(`/jobs/${job.ID}/${key}`), download: `${job.ID}.zip` }, label);
}

export async function renderJob(main, { id }, _params, signal) {
  let job = null;
  async function draw() {
    job = await api.get(`/jobs/${id}`);
    replace(main,
      h("nav", { class: "breadcrumbs" }, h("a", { href: "#/jobs" }, "Jobs"), h("span", { class: "sep" }, "›"),
        h("span", {}, job.Type)),
      h("header", { class: "page-header" }, h("h1", {}, job.Type), stateChip(job),
        FINAL.includes(job.State) ? null : h("span", { class: "muted" }, "Refreshed every 2 s")),
      h("div", { class: "actions" }, commandButtons(job, draw), output(job)),
      h("div", { class: "columns" },
        h("section", { class: "card" }, h("h2", {}, "Job"), facts(job)),
        h("section", { class: "card grow" }, h("h2", {}, "Content"),
          h("pre", { class: "json", id: "job-content" }, JSON.stringify(job.Content ?? {}, null, 2)))));
  }
  await draw();
  refreshing(draw, signal, () => !FINAL.includes(job.State));
}
