// "Previous / Next" with the position in the list: pages are fetched with Since/Limit, never the whole list.
import { h } from "../dom.js";

export function pager({ page, size, total, shown, onPage }) {
  const first = total === 0 ? 0 : page * size + 1;
  const last = page * size + shown;
  const pages = Math.max(1, Math.ceil(total / size));
  return h("div", { class: "pager" },
    h("button", { class: "button", disabled: page === 0, onclick: () => onPage(page - 1) }, "‹ Previous"),
    h("span", { class: "pager-position" }, `${first}–${last} of ${total} · page ${page + 1} / ${pages}`),
    h("button", { class: "button", disabled: last >= total, onclick: () => onPage(page + 1) }, "Next ›"));
}
