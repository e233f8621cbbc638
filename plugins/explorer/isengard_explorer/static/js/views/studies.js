// The study list: a search form backed by /tools/find, a sortable table, pages fetched with Since/Limit so a
// store of any size answers as fast as its first page.
import { api } from "../api.js";
import { hasOrderBy } from "../capabilities.js";
import { h, replace } from "../dom.js";
import { formatDate, formatName, plural } from "../format.js";
import { navigate } from "../router.js";
import { pager } from "../widgets/pager.js";
import { studyFields, studyQuery } from "../widgets/studysearch.js";
import { dataTable } from "../widgets/table.js";

const PAGE_SIZES = ["25", "50", "100"];
const COUNTS = ["ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"];

function findBody(params) {
  const body = { Level: "Study", Query: studyQuery(params) };
  const labels = (params.get("labels") || "").split(/[\s,]+/).filter(Boolean);
  if (labels.length) {
    body.Labels = labels;
    body.LabelsConstraint = "All";
  }
  return body;
}

const tag = (name) => (study) => study.MainDicomTags?.[name] ?? "";
const patientTag = (name) => (study) => study.PatientMainDicomTags?.[name] ?? "";
const requested = (name) => (study) => study.RequestedTags?.[name] ?? "";

const COLUMNS = [
  { key: "PatientName", dicom: true, label: "Patient", value: patientTag("PatientName"),
    render: (s) => formatName(patientTag("PatientName")(s)) },
  { key: "PatientID", dicom: true, label: "Patient ID", value: patientTag("PatientID") },
  { key: "StudyDate", dicom: true, label: "Date", value: tag("StudyDate"), render: (s) => formatDate(tag("StudyDate")(s)) },
  { key: "StudyDescription", dicom: true, label: "Description", value: tag("StudyDescription") },
  { key: "AccessionNumber", dicom: true, label: "Accession", value: tag("AccessionNumber") },
  { key: "ModalitiesInStudy", label: "Modalities", value: requested("ModalitiesInStudy"),
    render: (s) => requested("ModalitiesInStudy")(s).replaceAll("\\", ", ") },
  { key: "NumberOfStudyRelatedSeries", label: "Series", class: "num",
    value: (s) => Number(requested("NumberOfStudyRelatedSeries")(s)) },
  { key: "NumberOfStudyRelatedInstances", label: "Instances", class: "num",
    value: (s) => Number(requested("NumberOfStudyRelatedInstances")(s)) },
  { key: "Labels", label: "Labels", sortable: false, value: (s) => (s.Labels || []).join(" "),
    render: (s) => (s.Labels || []).map((l) => h("span", { class: "chip" }, l)) },
];

function searchForm(params) {
  const form = h("form", { class: "search", role: "search" },
    studyFields(params),
    h("label", {}, h("span", {}, "Labels"),
      h("input", { name: "labels", type: "text", value: params.get("labels") || "" })),
    h("label", {}, h("span", {}, "Per page"), h("select", { name: "size" },
      PAGE_SIZES.map((s) => h("option", { value: s, selected: s === (params.get("size") || "50") }, s)))),
    h("div", { class: "search-buttons" },
      h("button", { class: "button primary", type: "submit" }, "Search"),
      h("button", { class: "button", type: "reset" }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = {};
    for (const [name, value] of new FormData(form)) if (value) next[name] = value;
    navigate("/studies", next);
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    navigate("/studies");
  });
  return form;
}

function hasFilter(body) {
  return Object.keys(body.Query).length > 0 || !!body.Labels;
}

export async function renderStudies(main, _args, params) {
  const size = Number(PAGE_SIZES.includes(params.get("size")) ? params.get("size") : "50");
  const page = Math.max(0, Number(params.get("page")) || 0);
  const sort = params.get("sort") ? { key: params.get("sort"), dir: params.get("dir") || "asc" } : null;
  const body = findBody(params);
  const extended = await hasOrderBy();
  const serverSort = !!sort && extended && COLUMNS.some((c) => c.key === sort.key && c.dicom);
  const pageBody = { ...body, Expand: true, Since: page * size, Limit: size, RequestedTags: COUNTS };
  if (serverSort) pageBody.OrderBy = [{ Type: "DicomTag", Key: sort.key, Direction: sort.dir.toUpperCase() }];
  const started = performance.now();
  const [studies, total] = await Promise.all([
    api.post("/tools/find", pageBody),
    hasFilter(body)
      ? api.post("/tools/count-resources", body).then((r) => r.Count)
      : api.get("/statistics").then((s) => s.CountStudies),
  ]);
  const elapsed = Math.round(performance.now() - started);
  const change = (extra) => navigate("/studies", { ...Object.fromEntries(params), ...extra });
  if (sort && !serverSort) {
    // the server cannot order /tools/find: order what this page holds
    const col = COLUMNS.find((c) => c.key === sort.key);
    if (col) {
      const sign = sort.dir === "desc" ? -1 : 1;
      studies.sort((a, b) => sign * String(col.value(a)).localeCompare(String(col.value(b)), undefined,
        { numeric: true }));
    }
  }
  const table = dataTable({
    columns: COLUMNS,
    rows: studies,
    rowHref: (s) => `#/study/${s.ID}`,
    sort,
    empty: "No study matches.",
    onSort: (key, dir) => change(extended ? { sort: key, dir, page: 0 } : { sort: key, dir }),
  });
  const bar = pager({ page, size, total, shown: studies.length, onPage: (p) => change({ page: p }) });
  replace(main,
    h("header", { class: "page-header" }, h("h1", {}, "Studies"),
      h("span", { class: "muted", id: "study-count" }, `${plural(total, "study")} · ${elapsed} ms`)),
    searchForm(params),
    bar,
    h("div", { class: "card table-card" }, table),
    sort && !serverSort ? h("p", { class: "muted small" }, "Sorted within this page (the server has no OrderBy).")
      : null);
}
