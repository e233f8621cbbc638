// The labels of a resource (Orthanc 1.12): chips to remove, a field to add one.
import { api } from "../api.js";
import { h, replace } from "../dom.js";
import { notify } from "./toast.js";

const LABEL = /^[A-Za-z0-9_-]+$/; // Orthanc accepts letters, digits, "-" and "_" only

export function labelsEditor(level, id, labels) {
  const chips = h("span", { class: "chips" });
  const input = h("input", { type: "text", placeholder: "Add label", class: "label-input", "aria-label": "New label" });
  let current = [...labels];

  function draw() {
    replace(chips, current.map((label) =>
      h("span", { class: "chip" }, label,
        h("button", { class: "chip-remove", title: `Remove ${label}`, onclick: () => remove(label) }, "×"))));
  }

  async function remove(label) {
    try {
      await api.delete(`/${level}/${id}/labels/${encodeURIComponent(label)}`);
      current = current.filter((l) => l !== label);
      draw();
    } catch (error) {
      notify(error.message, "error");
    }
  }

  async function add() {
    const label = input.value.trim();
    if (!label) return;
    if (!LABEL.test(label)) {
      notify("A label has only letters, digits, - and _", "error");
      return;
    }
    try {
      await api.put(`/${level}/${id}/labels/${encodeURIComponent(label)}`);
      if (!current.includes(label)) current.push(label);
      input.value = "";
      draw();
    } catch (error) {
      notify(error.message, "error");
    }
  }

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") add();
  });
  draw();
  return h("div", { class: "labels" }, h("span", { class: "muted" }, "Labels"), chips, input);
}
