// A series: the scrollable stack of its images, its tags and its instances.
import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { plural } from "../format.js";
import { actionBar } from "../widgets/actions.js";
import { breadcrumbs, seriesTitle } from "../widgets/breadcrumbs.js";
import { dicomwebLinks } from "../widgets/dicomweb.js";
import { labelsEditor } from "../widgets/labels.js";
import { mainTags } from "../widgets/maintags.js";
import { slideViewerLink } from "../widgets/slideviewer.js";
import { imageStack } from "../widgets/stack.js";
import { dataTable } from "../widgets/table.js";
import { viewerLink } from "../widgets/viewerlink.js";

// The order of a series' images: IndexInSeries (Orthanc's position from the instance number), else InstanceNumber.
function position(instance) {
  return instance.IndexInSeries ?? (Number(instance.MainDicomTags?.InstanceNumber) || 0);
}

export async function renderSeries(main, { id }) {
  const [series, instances] = await Promise.all([
    api.get(`/series/${id}`),
    api.get(`/series/${id}/instances?expand`),
  ]);
  instances.sort((a, b) => position(a) - position(b));
  const title = seriesTitle(series);
  replace(main,
    await breadcrumbs("series", series),
    h("header", { class: "page-header" }, h("h1", {}, title),
      h("span", { class: "muted" }, plural(instances.length, "instance")),
      await viewerLink("series", id),
      await slideViewerLink(series, instances[0]?.ID)),
    actionBar("series", series, title),
    labelsEditor("series", id, series.Labels || []),
    await dicomwebLinks("series", series),
    h("div", { class: "columns" },
      h("section", { class: "card viewer-card" }, imageStack(instances.map((i) => i.ID))),
      h("section", { class: "card grow" }, h("h2", {}, "Series"), mainTags(series.MainDicomTags),
        h("h2", {}, "Instances"),
        dataTable({
          columns: [
            { key: "InstanceNumber", label: "#", class: "num", value: (i) => Number(i.MainDicomTags?.InstanceNumber) || 0,
              render: (i) => i.MainDicomTags?.InstanceNumber ?? "" },
            { key: "SOPInstanceUID", label: "SOP Instance UID", class: "uid", value: (i) => i.MainDicomTags?.SOPInstanceUID ?? "" },
            { key: "Size", label: "Size", class: "num", value: (i) => i.FileSize ?? 0,
              render: (i) => (i.FileSize ? `${Math.round(i.FileSize / 1024)} KiB` : "") },
          ],
          rows: instances,
          rowHref: (i) => `#/instance/${i.ID}`,
        }))));
}
