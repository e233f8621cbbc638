// Query/retrieve: C-FIND the studies of a DICOM modality (POST /modalities/{name}/query, answers kept under
// /queries/{id}), then C-MOVE the chosen ones here (POST /queries/{id}/answers/{i}/retrieve), each as a job.
// The search lives in the URL like the study list's, so a reload or the back button asks the modality again.
import { api } from "../api.js";
import { serverSystem } from "../capabilities.js";
import { h, replace } from "../dom.js";
import { formatDate, formatName, plural } from "../format.js";
import { navigate } from "../router.js";
import { watchJob } from "../widgets/jobwatch.js";
import { studyFields, studyQuery } from "../widgets/studysearch.js";
import { dataTable } from "../widgets/table.js";
import { notify } from "../widgets/toast.js";

// Asked back for every answer (empty: a return key), unless the form filters on them.
const RETURN_KEYS = ["PatientName", "PatientID", "StudyDate", "StudyDescription", "AccessionNumber",
  "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID"];

function queryBody(params) {
  const returned = Object.fromEntries(RETURN_KEYS.map((key) => [key, ""]));
  return { Level: "Study", Query: { ...returned, ...studyQuery(params) } };
}

function searchForm(modalities, params) {
  const remote = params.get("remote") || modalities[0];
  const form = h("form", { class: "search", role: "search" },
    h("label", {}, h("span", {}, "Remote modality"), h("select", { name: "remote" },
      modalities.map((m) => h("option", { value: m, selected: m === remote }, m)))),
    studyFields(params),
    h("div", { class: "search-buttons" },
      h("button", { class: "button primary", type: "submit" }, "Search"),
      h("button", { class: "button", type: "button", onclick: () => echo(form.elements.remote.value) }, "Echo")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = {};
    for (const [name, value] of new FormData(form)) if (value) next[name] = value;
    navigate("/retrieve", next);
  });
  return form;
}

async function echo(name) {
  try {
    await api.post(`/modalities/${encodeURIComponent(name)}/echo`, {});
    notify(`${name} answers C-ECHO`, "success");
  } catch (error) {
    notify(`C-ECHO to ${name} failed: ${error.message}`, "error");
  }
}

// The local study a retrieval brought, once its job succeeded.
async function openLink(studyUid) {
  const [id] = await api.post("/tools/find", { Level: "Study", Query: { StudyInstanceUID: studyUid } });
  return id ? h("a", { href: `#/study/${id}` }, "Open the study") : null;
}

// answers: [{ index, answer }], an answer's index in the query and its simplified tags.
async function retrieve(queryId, answers, progress) {
  const { DicomAet } = await serverSystem();
  await Promise.all(answers.map(async ({ index, answer }) => {
    const line = h("div", { class: "retrieve-item" },
      h("span", {}, formatName(answer.PatientName), " · ", answer.StudyDescription || formatDate(answer.StudyDate)));
    progress.append(line);
    try {
      const started = await api.post(`/queries/${queryId}/answers/${index}/retrieve`,
        { TargetAet: DicomAet, Synchronous: false });
      const job = await watchJob(started.ID, line);
      if (job.State !== "Success") {
        notify(`Retrieve failed: ${job.ErrorDescription || job.ErrorCode}`, "error");
        return;
      }
      window.dispatchEvent(new Event("explorer:changed"));
      line.append(await openLink(answer.StudyInstanceUID));
    } catch (error) {
      notify(error.message, "error");
    }
  }));
}

const answerTag = (name) => (a) => a.answer[name] ?? "";

function answersTable(queryId, answers, progress) {
  const rows = answers.map((answer, index) => ({ index, answer, box: h("input", { type: "checkbox",
    "aria-label": "Select this study" }) }));
  const button = h("button", { class: "button primary" });
  const selected = () => rows.filter((r) => r.box.checked);
  const update = () => {
    button.disabled = selected().length === 0;
    button.textContent = `Retrieve selected (${selected().length})`;
  };
  for (const row of rows) row.box.addEventListener("change", update);
  const all = h("button", { class: "button", onclick: () => {
    const check = selected().length < rows.length;
    for (const row of rows) row.box.checked = check;
    update();
  } }, "Select all");
  button.addEventListener("click", () => retrieve(queryId, selected(), progress));
  update();
  return [
    h("div", { class: "actions" }, all, button),
    h("div", { class: "card table-card" }, dataTable({
      columns: [
        { key: "select", label: "", sortable: false, value: (r) => r.box },
        { key: "PatientName", label: "Patient", value: answerTag("PatientName"),
          render: (r) => formatName(answerTag("PatientName")(r)) },
        { key: "PatientID", label: "Patient ID", value: answerTag("PatientID") },
        { key: "StudyDate", label: "Date", value: answerTag("StudyDate"),
          render: (r) => formatDate(answerTag("StudyDate")(r)) },
        { key: "StudyDescription", label: "Description", value: answerTag("StudyDescription") },
        { key: "AccessionNumber", label: "Accession", value: answerTag("AccessionNumber") },
        { key: "ModalitiesInStudy", label: "Modalities",
          value: (r) => answerTag("ModalitiesInStudy")(r).replaceAll("\\", ", ") },
        { key: "NumberOfStudyRelatedSeries", label: "Series", class: "num",
          value: (r) => Number(answerTag("NumberOfStudyRelatedSeries")(r)) || "" },
        { key: "NumberOfStudyRelatedInstances", label: "Instances", class: "num",
          value: (r) => Number(answerTag("NumberOfStudyRelatedInstances")(r)) || "" },
      ],
      rows,
      sort: { key: "StudyDate", dir: "desc" },
      empty: "The modality has no matching study.",
    })),
  ];
}

export async function renderRetrieve(main, _args, params) {
  const modalities = await api.get("/modalities");
  const summary = h("span", { class: "muted", id: "query-summary" }, "C-FIND on a DICOM modality, C-MOVE here");
  const header = h("header", { class: "page-header" }, h("h1", {}, "Query / Retrieve"), summary);
  if (!modalities.length) {
    replace(main, header, h("p", { class: "card" },
      "No DICOM modality is configured: add one to DicomModalities (or PUT /modalities/{name})."));
    return;
  }
  const progress = h("div", { class: "action-progress", id: "retrieve-progress" });
  const remote = params.get("remote");
  if (!remote) {
    replace(main, header, searchForm(modalities, params));
    return;
  }
  const started = performance.now();
  const { ID } = await api.post(`/modalities/${encodeURIComponent(remote)}/query`, queryBody(params));
  const answers = await api.get(`/queries/${ID}/answers?expand&simplify`);
  summary.textContent = `${plural(answers.length, "study")} on ${remote} · ` +
    `${Math.round(performance.now() - started)} ms`;
  replace(main, header, searchForm(modalities, params), progress, answersTable(ID, answers, progress));
}
