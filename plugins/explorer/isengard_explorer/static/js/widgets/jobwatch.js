// Follows a job (/jobs/{id}) until it ends, showing its progress; resolves with its final state.
import { api } from "../api.js";
import { h } from "../dom.js";

const POLL_MS = 700;

export function progressBar(percent) {
  return h("progress", { max: 100, value: Number(percent) || 0, class: "progress" });
}

export function watchJob(jobId, container) {
  const bar = progressBar(0);
  const label = h("span", { class: "muted" }, "Pending");
  container.append(h("div", { class: "job-watch" }, h("code", {}, jobId.slice(0, 8)), bar, label));
  return new Promise((resolve, reject) => {
    async function poll() {
      try {
        const job = await api.get(`/jobs/${jobId}`);
        bar.value = job.Progress;
        label.textContent = `${job.State} ${job.Progress}%`;
        if (["Success", "Failure"].includes(job.State)) {
          resolve(job);
          return;
        }
        setTimeout(poll, POLL_MS);
      } catch (error) {
        reject(error);
      }
    }
    poll();
  });
}
