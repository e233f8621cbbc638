// A study: its tags, statistics, actions and the table of its series.
import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { formatSize, plural } from "../format.js";
import { actionBar } from "../widgets/actions.js";
import { breadcrumbs, studyTitle } from "../widgets/breadcrumbs.js";
import { dicomwebLinks } from "../widgets/dicomweb.js";
import { labelsEditor } from "../widgets/labels.js";
import { mainTags } from "../widgets/maintags.js";
import { dataTable } from "../widgets/table.js";
import { viewerLink } from "../widgets/viewerlink.js";

const tag = (name) => (series) => series.MainDicomTags?.[name] ?? "";

export async function renderStudy(main, { id }) {
  const [study, series, stats] = await Promise.all([
    api.get(`/studies/${id}`),
    api.get(`/studies/${id}/series?expand`),
    api.get(`/studies/${id}/statistics`),
  ]);
  const title = studyTitle(study);
  replace(main,
    await breadcrumbs("studies", study),
    h("header", { class: "page-header" }, h("h1", {}, title),
      h("span", { class: "muted" },
        `${plural(stats.CountSeries, "series")} · ${plural(stats.CountInstances, "instance")} · ${formatSize(stats.DiskSize)}`),
      await viewerLink("study", id)),
    actionBar("studies", study, title),
    labelsEditor("studies", id, study.Labels || []),
    await dicomwebLinks("studies", study),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Study"), mainTags(study.MainDicomTags),
        h("h2", {}, "Patient"), mainTags(study.PatientMainDicomTags)),
      h("section", { class: "card grow" }, h("h2", {}, "Series"),
        dataTable({
          columns: [
            { key: "SeriesNumber", label: "#", class: "num", value: (s) => Number(tag("SeriesNumber")(s)) || 0,
              render: tag("SeriesNumber") },
            { key: "Modality", label: "Modality", value: tag("Modality") },
            { key: "SeriesDescription", label: "Description", value: tag("SeriesDescription") },
            { key: "BodyPartExamined", label: "Body part", value: tag("BodyPartExamined") },
            { key: "Instances", label: "Instances", class: "num", value: (s) => s.Instances.length },
          ],
          rows: series,
          sort: { key: "SeriesNumber", dir: "asc" },
          rowHref: (s) => `#/series/${s.ID}`,
        }))));
}
