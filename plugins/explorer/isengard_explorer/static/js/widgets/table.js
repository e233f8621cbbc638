// A table of resources: sortable headers, rows that open their resource.
import { h, replace } from "../dom.js";

function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a ?? "").localeCompare(String(b ?? ""), undefined, { numeric: true, sensitivity: "base" });
}

// columns: [{ key, label, value(row) for sorting, render(row) for display (defaults to value) }]
// sort: { key, dir: "asc" | "desc" } shown initially; onSort(key, dir) replaces local sorting when given.
export function dataTable({ columns, rows, rowHref, sort = null, onSort = null, empty = "Nothing to show." }) {
  let state = sort;
  const tbody = h("tbody");
  const headers = columns.map((col) =>
    h("th", { scope: "col", class: col.sortable === false ? "" : "sortable", dataset: { key: col.key } }, col.label),
  );

  function draw() {
    let shown = rows;
    if (state && !onSort) {
      const col = columns.find((c) => c.key === state.key);
      const sign = state.dir === "desc" ? -1 : 1;
      shown = [...rows].sort((a, b) => sign * compare(col.value(a), col.value(b)));
    }
    for (const th of headers) {
      th.classList.toggle("sorted-asc", !!state && th.dataset.key === state.key && state.dir === "asc");
      th.classList.toggle("sorted-desc", !!state && th.dataset.key === state.key && state.dir === "desc");
    }
    if (!shown.length) {
      replace(tbody, h("tr", {}, h("td", { colSpan: columns.length, class: "empty" }, empty)));
      return;
    }
    replace(
      tbody,
      shown.map((row) => {
        const href = rowHref ? rowHref(row) : null;
        const tr = h("tr", { class: href ? "clickable" : "" },
          columns.map((col) => h("td", { class: col.class || "" }, (col.render || col.value)(row))));
        if (href) {
          tr.addEventListener("click", (event) => {
            if (!event.target.closest("a, button, input")) window.location.hash = href;
          });
        }
        return tr;
      }),
    );
  }

  for (const th of headers) {
    if (!th.classList.contains("sortable")) continue;
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      const dir = state && state.key === key && state.dir === "asc" ? "desc" : "asc";
      state = { key, dir };
      if (onSort) onSort(key, dir);
      else draw();
    });
  }
  draw();
  return h("table", { class: "data" }, h("thead", {}, h("tr", {}, headers)), tbody);
}
