// Sending a resource to a DICOM modality (C-STORE) or an Orthanc peer, as a job with visible progress.
import { api } from "../api.js";
import { formDialog } from "./dialog.js";
import { watchJob } from "./jobwatch.js";
import { notify } from "./toast.js";

async function names(path) {
  try {
    return await api.get(path);
  } catch {
    return []; // a server without peers support answers 404: offer modalities only
  }
}

export async function sendResource(level, id, progress) {
  const [modalities, peers] = await Promise.all([names("/modalities"), names("/peers")]);
  const targets = [...modalities.map((m) => `modality: ${m}`), ...peers.map((p) => `peer: ${p}`)];
  if (!targets.length) {
    notify("No modality or peer is configured (DicomModalities, OrthancPeers)", "error");
    return;
  }
  const values = await formDialog("Send", [{ name: "target", label: "To", type: "select", options: targets }],
    { action: "Send" });
  if (!values) return;
  const [kind, name] = values.target.split(": ");
  const path = kind === "peer" ? `/peers/${encodeURIComponent(name)}/store` : `/modalities/${encodeURIComponent(name)}/store`;
  try {
    const started = await api.post(path, { Resources: [id], Asynchronous: true });
    const job = await watchJob(started.ID, progress);
    if (job.State === "Success") notify(`Sent to ${name}`, "success");
    else notify(`Sending to ${name} failed: ${job.ErrorDescription || job.ErrorCode}`, "error");
  } catch (error) {
    notify(error.message, "error");
  }
}
