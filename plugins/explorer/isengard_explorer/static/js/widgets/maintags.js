// Main DICOM tags of a resource as a definition list, with dates and names made readable.
import { h } from "../dom.js";
import { formatDate, formatName } from "../format.js";

export function mainTags(tags) {
  return h("dl", { class: "main-tags" },
    Object.entries(tags || {}).map(([name, value]) => {
      let shown = value;
      if (name.endsWith("Date")) shown = formatDate(value);
      else if (name.endsWith("Name")) shown = formatName(value);
      return [h("dt", {}, name.replace(/([a-z])([A-Z])/g, "$1 $2")), h("dd", {}, shown)];
    }));
}
