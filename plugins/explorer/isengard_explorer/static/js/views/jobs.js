// The jobs of the server (/jobs?expand), refreshed while the page is open, with pause/resume/cancel/resubmit.
import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { formatTimestamp } from "../format.js";
import { progressBar } from "../widgets/jobwatch.js";
import { dataTable } from "../widgets/table.js";
import { notify } from "../widgets/toast.js";

const REFRESH_MS = 2000;

// Which commands make sense in each state (Orthanc Book, "Jobs engine")
const COMMANDS = {
  Pending: ["pause", "cancel"],
  Running: ["pause", "cancel"],
  Paused: ["resume", "cancel"],
  Retry: ["cancel"],
  Failure: ["resubmit"],
  Success: [],
};

export async function renderJobs(main, _args, _params, signal) {
  const holder = h("div", { class: "card table-card" });
  replace(main, h("header", { class: "page-header" }, h("h1", {}, "Jobs"),
    h("span", { class: "muted" }, "Refreshed every 2 s")), holder);

  async function command(job, name) {
    try {
      await api.post(`/jobs/${job.ID}/${name}`, {});
      await draw();
    } catch (error) {
      notify(error.message, "error");
    }
  }

  async function draw() {
    const jobs = await api.get("/jobs?expand");
    replace(holder, dataTable({
      columns: [
        { key: "Type", label: "Type", value: (j) => j.Type },
        { key: "State", label: "State", value: (j) => j.State,
          render: (j) => h("span", { class: `state state-${j.State.toLowerCase()}` }, j.State) },
        { key: "Progress", label: "Progress", value: (j) => j.Progress,
          render: (j) => [progressBar(j.Progress), ` ${j.Progress}%`] },
        { key: "CreationTime", label: "Created", value: (j) => j.CreationTime,
          render: (j) => formatTimestamp(j.CreationTime) },
        { key: "Error", label: "Error", value: (j) => (j.ErrorCode ? j.ErrorDescription : "") },
        { key: "ID", label: "", sortable: false, value: (j) => j.ID,
          render: (j) => (COMMANDS[j.State] || []).map((c) =>
            h("button", { class: "button small", onclick: () => command(j, c) }, c)) },
      ],
      rows: jobs,
      sort: { key: "CreationTime", dir: "desc" },
      empty: "No job yet: jobs are created by sending, archiving, modifying…",
    }));
  }

  await draw();
  const timer = setInterval(() => draw().catch(() => {}), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
