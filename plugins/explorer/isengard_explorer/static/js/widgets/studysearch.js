// The study filters shared by the local search (/tools/find) and the remote one (C-FIND): the same fields, read
// back from URL-style parameters, give the same DICOM query on both sides.
import { h } from "../dom.js";
import { dicomDate } from "../format.js";

const TEXT_FIELDS = [
  ["PatientName", "Patient name"],
  ["PatientID", "Patient ID"],
  ["AccessionNumber", "Accession number"],
  ["StudyDescription", "Description"],
];

// Substring search as people expect it, unless the user wrote DICOM wildcards themselves.
function contains(value) {
  return /[*?]/.test(value) ? value : `*${value}*`;
}

// params: URLSearchParams (or FormData) with the fields below; answers Orthanc's "Query" object.
export function studyQuery(params) {
  const query = {};
  for (const [tag] of TEXT_FIELDS) {
    const value = (params.get(tag) || "").trim();
    if (value) query[tag] = contains(value);
  }
  const from = dicomDate(params.get("from"));
  const to = dicomDate(params.get("to"));
  if (from || to) query.StudyDate = from === to ? from : `${from}-${to}`;
  if (params.get("modality")) query.ModalitiesInStudy = params.get("modality");
  return query;
}

// The form fields of studyQuery, filled from params.
export function studyFields(params) {
  const field = (name, label, attrs = {}) =>
    h("label", {}, h("span", {}, label), h("input", { name, value: params.get(name) || "", ...attrs }));
  return [
    TEXT_FIELDS.map(([name, label]) => field(name, label, { type: "search" })),
    field("from", "Date from", { type: "date" }),
    field("to", "Date to", { type: "date" }),
    field("modality", "Modality", { type: "text", placeholder: "CT, MR…", size: 6 }),
  ];
}
