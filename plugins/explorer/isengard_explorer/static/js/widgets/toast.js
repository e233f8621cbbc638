// Short messages at the corner of the screen, for the outcome of an action.
import { h } from "../dom.js";

export function notify(message, kind = "info") {
  const toast = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  document.getElementById("toasts").append(toast);
  setTimeout(() => toast.remove(), kind === "error" ? 8000 : 4000);
}
