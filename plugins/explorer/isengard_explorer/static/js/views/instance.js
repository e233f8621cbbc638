// An instance: its image, the full tag tree with a filter, and its actions (download, send, delete).
import { api, url } from "../api.js";
import { h, replace } from "../dom.js";
import { formatSize } from "../format.js";
import { actionBar } from "../widgets/actions.js";
import { breadcrumbs } from "../widgets/breadcrumbs.js";
import { dicomwebLinks } from "../widgets/dicomweb.js";
import { labelsEditor } from "../widgets/labels.js";
import { filterTagTree, tagTree } from "../widgets/tagtree.js";

export async function renderInstance(main, { id }) {
  const [instance, tags] = await Promise.all([api.get(`/instances/${id}`), api.get(`/instances/${id}/tags`)]);
  const tree = tagTree(tags);
  const filter = h("input", { type: "search", placeholder: "Filter tags", class: "tag-filter", "aria-label": "Filter tags" });
  filter.addEventListener("input", () => filterTagTree(tree, filter.value));
  const image = h("img", { id: "instance-image", class: "instance-image", src: url(`/instances/${id}/preview`),
    alt: "Instance preview" });
  image.addEventListener("error", () => image.replaceWith(h("p", { class: "muted" }, "No preview for this instance.")));
  const frames = instance.MainDicomTags?.NumberOfFrames;
  replace(main,
    await breadcrumbs("instances", instance),
    h("header", { class: "page-header" }, h("h1", {}, `Instance ${instance.MainDicomTags?.InstanceNumber ?? ""}`),
      h("span", { class: "muted" }, [formatSize(instance.FileSize), frames && `${frames} frames`].filter(Boolean).join(" · "))),
    actionBar("instances", instance, instance.MainDicomTags?.SOPInstanceUID || id),
    labelsEditor("instances", id, instance.Labels || []),
    await dicomwebLinks("instances", instance),
    h("div", { class: "columns" },
      h("section", { class: "card viewer-card" }, h("div", { class: "stack-viewport" }, image)),
      h("section", { class: "card grow" }, h("div", { class: "card-header" }, h("h2", {}, "Tags"), filter), tree)));
}
