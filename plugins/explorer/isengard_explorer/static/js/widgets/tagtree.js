// The full tag tree of an instance (/instances/{id}/tags, Orthanc's "full" format): sequences fold open.
import { h } from "../dom.js";

function valueOf(entry) {
  if (entry.Type === "Sequence") return null;
  if (entry.Type === "Null") return h("span", { class: "muted" }, "(empty)");
  if (entry.Type === "TooLong") return h("span", { class: "muted" }, "(too long)");
  if (entry.Type === "Binary") return h("span", { class: "muted" }, "(binary)");
  return String(entry.Value);
}

function rows(tags, depth) {
  return Object.entries(tags).map(([tag, entry]) => {
    const head = [h("code", { class: "tag" }, tag), h("span", { class: "tag-name" }, entry.Name || "")];
    if (entry.Type !== "Sequence") {
      return h("li", { class: "tag-row" }, head, h("span", { class: "tag-value" }, valueOf(entry)));
    }
    const items = entry.Value.map((item, i) =>
      h("details", { class: "tag-item", open: depth < 1 },
        h("summary", {}, `Item ${i + 1}`), h("ul", { class: "tag-list" }, rows(item, depth + 1))));
    return h("li", { class: "tag-row sequence" },
      h("details", { open: false }, h("summary", {}, head, h("span", { class: "muted" }, ` ${items.length} item(s)`)),
        items));
  });
}

export function tagTree(tags) {
  return h("ul", { class: "tag-list root" }, rows(tags, 0));
}

// Keep rows whose tag, name or value contains the text; sequences stay when one of their rows matches.
export function filterTagTree(tree, text) {
  const needle = text.trim().toLowerCase();
  for (const li of tree.querySelectorAll("li.tag-row:not(.sequence)")) {
    li.hidden = needle !== "" && !li.textContent.toLowerCase().includes(needle);
  }
  for (const li of [...tree.querySelectorAll("li.sequence")].reverse()) {
    const visible = needle === "" || li.querySelector(":scope > details > summary").textContent.toLowerCase()
      .includes(needle) || [...li.querySelectorAll("li.tag-row")].some((c) => !c.hidden);
    li.hidden = !visible;
    // open what matched; once the filter is cleared, fold the sequences back
    if (!needle) li.querySelector(":scope > details").open = false;
    else if (visible) li.querySelectorAll("details").forEach((d) => { d.open = true; });
  }
}
