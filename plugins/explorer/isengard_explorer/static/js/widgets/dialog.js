// Modal dialogs built on <dialog>: a confirmation, and a small form. Both resolve with the answer.
import { h } from "../dom.js";

function open(dialog) {
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());
  dialog.showModal();
}

export function confirmDialog(message, { action = "Confirm", danger = false } = {}) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "modal" },
      h("form", { method: "dialog" },
        h("p", {}, message),
        h("menu", {},
          h("button", { value: "cancel", class: "button" }, "Cancel"),
          h("button", { value: "ok", class: danger ? "button danger" : "button primary" }, action))));
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"));
    open(dialog);
  });
}

// fields: [{ name, label, value, type ("text", "checkbox", "select", "textarea"), options }]
export function formDialog(title, fields, { action = "OK", intro = null } = {}) {
  return new Promise((resolve) => {
    const inputs = fields.map((field) => {
      if (field.type === "select") {
        return h("select", { name: field.name },
          field.options.map((o) => h("option", { value: o, selected: o === field.value }, o)));
      }
      if (field.type === "textarea") return h("textarea", { name: field.name, rows: 6 }, field.value || "");
      if (field.type === "checkbox") return h("input", { type: "checkbox", name: field.name, checked: !!field.value });
      return h("input", { type: "text", name: field.name, value: field.value ?? "" });
    });
    const form = h("form", { method: "dialog", class: "form" },
      h("h2", {}, title),
      intro && h("p", { class: "muted" }, intro),
      fields.map((field, i) => h("label", { class: field.type === "checkbox" ? "check" : "" },
        h("span", {}, field.label), inputs[i])),
      h("menu", {},
        h("button", { value: "cancel", class: "button" }, "Cancel"),
        h("button", { value: "ok", class: "button primary" }, action)));
    const dialog = h("dialog", { class: "modal" }, form);
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      const values = {};
      fields.forEach((field, i) => {
        values[field.name] = field.type === "checkbox" ? inputs[i].checked : inputs[i].value;
      });
      resolve(values);
    });
    open(dialog);
  });
}
