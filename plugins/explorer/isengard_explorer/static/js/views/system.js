// The server: /system, /statistics and the loaded plugins (/plugins).
import { api } from "../api.js";
import { serverPlugins, serverSystem } from "../capabilities.js";
import { h, replace } from "../dom.js";
import { formatSize } from "../format.js";
import { dataTable } from "../widgets/table.js";

function facts(pairs) {
  return h("dl", { class: "main-tags" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v ?? ""))]));
}

export async function renderSystem(main) {
  const [system, stats, names] = await Promise.all([serverSystem(), api.get("/statistics"), serverPlugins()]);
  const plugins = await Promise.all(names.filter((n) => n !== "explorer.js").map((n) => api.get(`/plugins/${n}`)));
  replace(main,
    h("header", { class: "page-header" }, h("h1", {}, system.Name || "System"),
      h("span", { class: "muted" }, `Isengard ${system.IsengardVersion || ""} · Orthanc API ${system.ApiVersion}`)),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Server"), facts([
        ["DICOM AET", system.DicomAet], ["DICOM port", system.DicomPort], ["HTTP port", system.HttpPort],
        ["Orthanc version", system.Version], ["Database version", system.DatabaseVersion],
        ["Storage compression", system.StorageCompression], ["Overwrite instances", system.OverwriteInstances],
        ["Secure HTTP", system.IsHttpServerSecure],
      ])),
      h("section", { class: "card" }, h("h2", {}, "Statistics"), facts([
        ["Patients", stats.CountPatients], ["Studies", stats.CountStudies], ["Series", stats.CountSeries],
        ["Instances", stats.CountInstances], ["Disk size", formatSize(stats.TotalDiskSize)],
        ["Uncompressed size", formatSize(stats.TotalUncompressedSize)],
      ]))),
    h("section", { class: "card table-card" }, h("h2", {}, "Plugins"), dataTable({
      columns: [
        { key: "ID", label: "Name", value: (p) => p.ID },
        { key: "Version", label: "Version", value: (p) => p.Version },
        { key: "Description", label: "Description", value: (p) => p.Description },
      ],
      rows: plugins,
      sort: { key: "ID", dir: "asc" },
    })));
}
