// Upload: files and whole folders dropped (or picked) are POSTed to /instances a few at a time, with an overall
// progress bar and the server's answer for each file.
import { h, replace } from "../dom.js";
import { formatSize, plural } from "../format.js";
import { collectDropped } from "../widgets/dropfiles.js";
import { uploadFile } from "../api.js";

const PARALLEL = 3; // enough to hide latency without starving the server's 2 cores

function resultText(answer) {
  const results = Array.isArray(answer) ? answer : [answer];
  const statuses = results.map((r) => r.Status);
  return statuses.length === 1 ? statuses[0] : `${plural(statuses.length, "instance")}: ${[...new Set(statuses)].join(", ")}`;
}

export function renderUpload(main) {
  const bar = h("progress", { max: 1, value: 0, class: "progress wide", id: "upload-progress" });
  const summary = h("span", { class: "muted", id: "upload-summary" }, "");
  const results = h("ul", { class: "upload-results", id: "upload-results" });
  const input = h("input", { type: "file", multiple: true, id: "upload-input", class: "visually-hidden" });
  const folderInput = h("input", {
    type: "file", multiple: true, webkitdirectory: true, id: "upload-folder-input", class: "visually-hidden",
  });

  async function upload(files) {
    if (!files.length) return;
    const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
    const sent = new Array(files.length).fill(0);
    let done = 0;
    let failed = 0;
    bar.value = 0;
    replace(results);
    const rows = files.map((file) => {
      const status = h("span", { class: "status pending" }, "waiting");
      results.append(h("li", {}, h("span", { class: "file-name" }, file.webkitRelativePath || file.name),
        h("span", { class: "muted" }, formatSize(file.size)), status));
      return status;
    });
    const progress = () => {
      bar.value = sent.reduce((a, b) => a + b, 0) / total;
      summary.textContent = `${done} / ${files.length} files${failed ? `, ${failed} failed` : ""}`;
    };
    let next = 0;
    async function worker() {
      while (next < files.length) {
        const i = next;
        next += 1;
        rows[i].textContent = "uploading";
        try {
          const answer = await uploadFile(files[i], (loaded) => { sent[i] = loaded; progress(); });
          rows[i].textContent = resultText(answer);
          rows[i].className = "status ok";
        } catch (error) {
          failed += 1;
          rows[i].textContent = error.message;
          rows[i].className = "status failed";
        }
        sent[i] = files[i].size;
        done += 1;
        progress();
      }
    }
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    summary.textContent = `Done: ${done - failed} uploaded${failed ? `, ${failed} failed` : ""}`;
    window.dispatchEvent(new Event("explorer:changed"));
  }

  const zone = h("div", { class: "drop-zone", id: "drop-zone", tabIndex: 0 },
    h("p", { class: "drop-title" }, "Drop DICOM files, folders or ZIP archives here"),
    h("p", {},
      h("button", { class: "button primary", onclick: () => input.click() }, "Choose files"), " ",
      h("button", { class: "button", onclick: () => folderInput.click() }, "Choose a folder")),
    input, folderInput);
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    upload(await collectDropped(event.dataTransfer));
  });
  for (const picker of [input, folderInput]) {
    picker.addEventListener("change", () => {
      upload([...picker.files]);
      picker.value = "";
    });
  }
  replace(main, h("header", { class: "page-header" }, h("h1", {}, "Upload")), zone,
    h("div", { class: "upload-progress" }, bar, summary), results);
}
