// The DICOMweb addresses of a study, series or instance when the dicomweb plugin is loaded: QIDO-RS searches and
// WADO-RS metadata, for a person to open or copy into another client. The plugin serves them under "/dicom-web"
// unless its "Root" option says otherwise, which the REST API does not tell.
import { api, url } from "../api.js";
import { hasPlugin } from "../capabilities.js";
import { h } from "../dom.js";

const ROOT = url("/dicom-web");

// The DICOM UIDs of a resource and of its parents, from its main tags and, below the study, its parents' tags.
async function uids(level, resource) {
  const own = resource.MainDicomTags || {};
  if (level === "studies") return { study: own.StudyInstanceUID };
  const study = await api.get(`/${level}/${resource.ID}/study`);
  if (level === "series") return { study: study.MainDicomTags.StudyInstanceUID, series: own.SeriesInstanceUID };
  const series = await api.get(`/instances/${resource.ID}/series`);
  return { study: study.MainDicomTags.StudyInstanceUID, series: series.MainDicomTags.SeriesInstanceUID,
    instance: own.SOPInstanceUID };
}

function addresses({ study, series, instance }) {
  const studyPath = `${ROOT}/studies/${study}`;
  if (instance) {
    const path = `${studyPath}/series/${series}/instances/${instance}`;
    return [["Metadata (WADO-RS)", `${path}/metadata`], ["Rendered (WADO-RS)", `${path}/rendered`],
      ["Search (QIDO-RS)", `${studyPath}/series/${series}/instances?SOPInstanceUID=${instance}`]];
  }
  if (series) {
    const path = `${studyPath}/series/${series}`;
    return [["Metadata (WADO-RS)", `${path}/metadata`], ["Instances (QIDO-RS)", `${path}/instances`],
      ["Search (QIDO-RS)", `${studyPath}/series?SeriesInstanceUID=${series}`]];
  }
  return [["Metadata (WADO-RS)", `${studyPath}/metadata`], ["Series (QIDO-RS)", `${studyPath}/series`],
    ["Search (QIDO-RS)", `${ROOT}/studies?StudyInstanceUID=${study}`]];
}

// A line of links, or null without the plugin.
export async function dicomwebLinks(level, resource) {
  if (!(await hasPlugin("dicomweb"))) return null;
  return h("div", { class: "dicomweb-links" }, h("span", { class: "muted" }, "DICOMweb"),
    addresses(await uids(level, resource)).map(([label, href]) =>
      h("a", { href, target: "_blank", rel: "noopener" }, label)));
}
