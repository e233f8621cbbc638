// A link to the image viewer of the viewer plugin (/viewer/): a series opens there, a study opens its series list.
import { hasPlugin } from "../capabilities.js";
import { h } from "../dom.js";

// A button opening the viewer in a new tab, or null. The address is relative to /ui/, so a proxy prefix stays.
export async function viewerLink(level, id) {
  if (!(await hasPlugin("viewer"))) return null;
  return h("a", { class: "button primary", href: `../viewer/?${level}=${encodeURIComponent(id)}`,
    target: "_blank", rel: "noopener" }, "Viewer");
}
