// The patient list (GET /patients?expand&since&limit, a page at a time) and a patient's page with its studies.
import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { formatDate, formatName, plural } from "../format.js";
import { navigate } from "../router.js";
import { actionBar } from "../widgets/actions.js";
import { labelsEditor } from "../widgets/labels.js";
import { mainTags } from "../widgets/maintags.js";
import { pager } from "../widgets/pager.js";
import { dataTable } from "../widgets/table.js";

const PAGE_SIZE = 50;
const tag = (name) => (resource) => resource.MainDicomTags?.[name] ?? "";

export async function renderPatients(main, _args, params) {
  const page = Math.max(0, Number(params.get("page")) || 0);
  const [patients, stats] = await Promise.all([
    api.get(`/patients?expand&since=${page * PAGE_SIZE}&limit=${PAGE_SIZE}`),
    api.get("/statistics"),
  ]);
  const table = dataTable({
    columns: [
      { key: "PatientName", label: "Name", value: tag("PatientName"), render: (p) => formatName(tag("PatientName")(p)) },
      { key: "PatientID", label: "Patient ID", value: tag("PatientID") },
      { key: "PatientBirthDate", label: "Birth date", value: tag("PatientBirthDate"),
        render: (p) => formatDate(tag("PatientBirthDate")(p)) },
      { key: "PatientSex", label: "Sex", value: tag("PatientSex") },
      { key: "Studies", label: "Studies", class: "num", value: (p) => p.Studies.length },
      { key: "IsProtected", label: "Protected", value: (p) => (p.IsProtected ? "yes" : "") },
    ],
    rows: patients,
    rowHref: (p) => `#/patient/${p.ID}`,
    empty: "No patient yet: upload some files.",
  });
  replace(main,
    h("header", { class: "page-header" }, h("h1", {}, "Patients"),
      h("span", { class: "muted" }, plural(stats.CountPatients, "patient"))),
    pager({ page, size: PAGE_SIZE, total: stats.CountPatients, shown: patients.length,
      onPage: (p) => navigate("/patients", { page: p }) }),
    h("div", { class: "card table-card" }, table));
}

export async function renderPatient(main, { id }) {
  const [patient, studies, stats] = await Promise.all([
    api.get(`/patients/${id}`),
    api.get(`/patients/${id}/studies?expand`),
    api.get(`/patients/${id}/statistics`),
  ]);
  const name = formatName(patient.MainDicomTags.PatientName) || patient.MainDicomTags.PatientID || "Patient";
  replace(main,
    h("nav", { class: "breadcrumbs" }, h("a", { href: "#/patients" }, "Patients"), h("span", { class: "sep" }, "›"),
      h("span", {}, name)),
    h("header", { class: "page-header" }, h("h1", {}, name),
      h("span", { class: "muted" }, `${plural(studies.length, "study")} · ${plural(stats.CountInstances, "instance")}`)),
    actionBar("patients", patient, name),
    labelsEditor("patients", id, patient.Labels || []),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Patient"), mainTags(patient.MainDicomTags)),
      h("section", { class: "card grow" }, h("h2", {}, "Studies"),
        dataTable({
          columns: [
            { key: "StudyDate", label: "Date", value: tag("StudyDate"), render: (s) => formatDate(tag("StudyDate")(s)) },
            { key: "StudyDescription", label: "Description", value: tag("StudyDescription") },
            { key: "AccessionNumber", label: "Accession", value: tag("AccessionNumber") },
            { key: "Series", label: "Series", class: "num", value: (s) => s.Series.length },
          ],
          rows: studies,
          sort: { key: "StudyDate", dir: "desc" },
          rowHref: (s) => `#/study/${s.ID}`,
        }))));
}
