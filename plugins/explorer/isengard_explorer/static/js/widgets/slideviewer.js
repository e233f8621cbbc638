// A link to the slide viewer of the wsi plugin (/wsi/app/viewer.html, orthanc-wsi's address) for a VL Whole Slide
// Microscopy series: Modality SM, or the SOP class of its instances when a modality says otherwise.
import { api } from "../api.js";
import { hasPlugin } from "../capabilities.js";
import { h } from "../dom.js";

// VL Whole Slide Microscopy Image Storage (PS3.4 B.5).
const WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6";

async function isWholeSlide(series, firstInstanceId) {
  if (series.MainDicomTags?.Modality === "SM") return true;
  if (!firstInstanceId) return false;
  const sopClass = await api.get(`/instances/${firstInstanceId}/metadata/SopClassUid`).catch(() => "");
  return String(sopClass).trim() === WSI_SOP_CLASS;
}

// A button opening the viewer in a new tab, or null. The address is relative to /ui/, so a proxy prefix stays.
export async function slideViewerLink(series, firstInstanceId) {
  if (!(await hasPlugin("wsi")) || !(await isWholeSlide(series, firstInstanceId))) return null;
  return h("a", { class: "button primary", href: `../wsi/app/viewer.html?series=${encodeURIComponent(series.ID)}`,
    target: "_blank", rel: "noopener" }, "Slide viewer");
}
