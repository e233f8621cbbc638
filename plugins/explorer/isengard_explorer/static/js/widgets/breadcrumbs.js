// "Patient › Study › Series › Instance" above a resource page, each part a link to its page.
import { api } from "../api.js";
import { h, link } from "../dom.js";
import { formatDate, formatName } from "../format.js";

export function studyTitle(study) {
  const tags = study.MainDicomTags || {};
  return tags.StudyDescription || formatDate(tags.StudyDate) || "Study";
}

export function seriesTitle(series) {
  const tags = series.MainDicomTags || {};
  return [tags.Modality, tags.SeriesNumber && `#${tags.SeriesNumber}`, tags.SeriesDescription]
    .filter(Boolean).join(" ") || "Series";
}

// level: "patients" | "studies" | "series" | "instances"; parents are read from the REST API as needed.
export async function breadcrumbs(level, resource) {
  const parts = [];
  let series = null;
  let study = null;
  if (level === "instances") series = await api.get(`/series/${resource.ParentSeries}`);
  if (level === "series") series = resource;
  if (series) study = await api.get(`/studies/${series.ParentStudy}`);
  if (level === "studies") study = resource;
  if (study) {
    const patientName = formatName(study.PatientMainDicomTags?.PatientName) || study.PatientMainDicomTags?.PatientID;
    parts.push(link(`#/patient/${study.ParentPatient}`, patientName || "Patient"));
    parts.push(level === "studies" ? h("span", {}, studyTitle(study)) : link(`#/study/${study.ID}`, studyTitle(study)));
  }
  if (series) {
    parts.push(level === "series" ? h("span", {}, seriesTitle(series)) : link(`#/series/${series.ID}`, seriesTitle(series)));
  }
  if (level === "instances") parts.push(h("span", {}, `Instance ${resource.MainDicomTags?.InstanceNumber ?? ""}`));
  const crumbs = [link("#/studies", "Studies")];
  for (const part of parts) crumbs.push(h("span", { class: "sep" }, "›"), part);
  return h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" }, crumbs);
}
