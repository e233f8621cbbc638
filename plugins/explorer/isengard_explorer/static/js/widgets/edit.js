// Anonymize and modify forms (POST /{level}/{id}/anonymize|modify, Orthanc Book "Anonymization and
// modification"), run as jobs whose progress is shown; the new resource opens when they succeed.
import { api } from "../api.js";
import { h } from "../dom.js";
import { formDialog } from "./dialog.js";
import { watchJob } from "./jobwatch.js";
import { notify } from "./toast.js";

// "PatientName=Doe^John" lines as a Replace object
function replacements(text) {
  const out = {};
  for (const line of (text || "").split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

function tagList(text) {
  return (text || "").split(/[\s,;]+/).filter(Boolean);
}

const FORMS = {
  anonymize: {
    title: "Anonymize",
    intro: "Creates an anonymized copy (PS3.15 basic profile); the original is kept.",
    fields: [
      { name: "Replace", label: "Replace (Tag=Value per line)", type: "textarea" },
      { name: "Keep", label: "Keep tags (comma-separated)" },
      { name: "KeepPrivateTags", label: "Keep private tags", type: "checkbox" },
    ],
    body: (v) => ({ Replace: replacements(v.Replace), Keep: tagList(v.Keep), KeepPrivateTags: v.KeepPrivateTags }),
  },
  modify: {
    title: "Modify",
    intro: "Replaces or removes tags; changing identifiers needs Force.",
    fields: [
      { name: "Replace", label: "Replace (Tag=Value per line)", type: "textarea" },
      { name: "Remove", label: "Remove tags (comma-separated)" },
      { name: "KeepSource", label: "Keep the original", type: "checkbox", value: true },
      { name: "Force", label: "Force (allow changing identifiers)", type: "checkbox" },
    ],
    body: (v) => ({ Replace: replacements(v.Replace), Remove: tagList(v.Remove), KeepSource: v.KeepSource,
      Force: v.Force }),
  },
};

export async function editResource(level, id, operation, progress) {
  const form = FORMS[operation];
  const values = await formDialog(form.title, form.fields, { action: form.title, intro: form.intro });
  if (!values) return;
  try {
    const started = await api.post(`/${level}/${id}/${operation}`, { ...form.body(values), Asynchronous: true });
    const job = await watchJob(started.ID, progress);
    if (job.State !== "Success") {
      notify(`${form.title} failed: ${job.ErrorDescription || job.ErrorCode}`, "error");
      return;
    }
    window.dispatchEvent(new Event("explorer:changed"));
    const created = job.Content || {};
    const route = { Patient: "patient", Study: "study", Series: "series" }[created.Type];
    notify(`${form.title}: done`, "success");
    if (route && created.ID) {
      progress.append(h("p", {}, h("a", { href: `#/${route}/${created.ID}` }, `Open the new ${route}`)));
    }
  } catch (error) {
    notify(error.message, "error");
  }
}
