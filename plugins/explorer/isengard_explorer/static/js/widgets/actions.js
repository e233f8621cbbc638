// The action bar of a patient, study, series or instance: downloads, protection, deletion, editing, sending.
import { api, url } from "../api.js";
import { h } from "../dom.js";
import { confirmDialog } from "./dialog.js";
import { editResource } from "./edit.js";
import { notify } from "./toast.js";
import { sendResource } from "./transfer.js";

const LEVEL_NAMES = { patients: "patient", studies: "study", series: "series", instances: "instance" };

function changed() {
  window.dispatchEvent(new Event("explorer:changed"));
}

async function deleteResource(level, id, description) {
  const ok = await confirmDialog(`Delete the ${LEVEL_NAMES[level]} ${description}? This cannot be undone.`,
    { action: "Delete", danger: true });
  if (!ok) return;
  try {
    const answer = await api.delete(`/${level}/${id}`);
    notify(`Deleted ${LEVEL_NAMES[level]} ${description}`, "success");
    changed();
    const parent = answer && answer.RemainingAncestor;
    const route = parent ? { Patient: "patient", Study: "study", Series: "series" }[parent.Type] : null;
    window.location.hash = route ? `#/${route}/${parent.ID}` : "#/studies";
  } catch (error) {
    notify(error.message, "error");
  }
}

function protectButton(id, initiallyProtected) {
  let isProtected = initiallyProtected;
  const button = h("button", { class: "button" });
  const draw = () => {
    button.textContent = isProtected ? "Unprotect" : "Protect";
    button.title = isProtected ? "Let the recycler delete this patient when the disk is full" :
      "Keep this patient when the disk is full (MaximumStorageSize recycling)";
  };
  button.addEventListener("click", async () => {
    try {
      await api.put(`/patients/${id}/protected`, isProtected ? 0 : 1);
      isProtected = !isProtected;
      draw();
      notify(isProtected ? "Patient protected" : "Patient unprotected", "success");
    } catch (error) {
      notify(error.message, "error");
    }
  });
  draw();
  return button;
}

// resource: the JSON of /{level}/{id}; description: how to name it in messages.
export function actionBar(level, resource, description) {
  const id = resource.ID;
  const progress = h("div", { class: "action-progress" });
  const downloads = level === "instances"
    ? [h("a", { class: "button", href: url(`/instances/${id}/file`), download: `${id}.dcm` }, "Download DICOM")]
    : [
      h("a", { class: "button", href: `/${level}/${id}/archive`, download: `${id}.zip` }, "Download ZIP"),
      h("a", { class: "button", href: `/${level}/${id}/media`, download: `${id}-dicomdir.zip` }, "DICOMDIR"),
    ];
  const editing = level === "instances" ? [] : [
    h("button", { class: "button", onclick: () => editResource(level, id, "anonymize", progress) }, "Anonymize"),
    h("button", { class: "button", onclick: () => editResource(level, id, "modify", progress) }, "Modify"),
  ];
  return h("div", { class: "action-area" },
    h("div", { class: "actions" },
      downloads,
      level === "patients" && protectButton(id, !!resource.IsProtected),
      editing,
      h("button", { class: "button", onclick: () => sendResource(level, id, progress) }, "Send…"),
      h("button", { class: "button danger", onclick: () => deleteResource(level, id, description) }, "Delete")),
    progress);
}
