// A scrollable stack of a series' images (/instances/{id}/preview): mouse wheel, slider or arrow keys.
import { url } from "../api.js";
import { h, link } from "../dom.js";

const PRELOAD = 3; // neighbours fetched ahead, so scrolling shows cached pictures

export function imageStack(instanceIds) {
  let index = 0;
  const cache = new Map();
  const img = h("img", { class: "stack-image", alt: "Instance preview" });
  const counter = h("span", { class: "stack-counter" });
  const open = link("#", "Open instance");
  const slider = h("input", {
    type: "range", min: 0, max: Math.max(0, instanceIds.length - 1), value: 0, class: "stack-slider",
    "aria-label": "Image in series",
  });

  function preload(i) {
    if (i < 0 || i >= instanceIds.length || cache.has(i)) return;
    const pic = new Image();
    pic.src = url(`/instances/${instanceIds[i]}/preview`);
    cache.set(i, pic);
  }

  function show(i) {
    index = Math.min(Math.max(i, 0), instanceIds.length - 1);
    img.src = url(`/instances/${instanceIds[index]}/preview`);
    slider.value = index;
    counter.textContent = `${index + 1} / ${instanceIds.length}`;
    open.href = `#/instance/${instanceIds[index]}`;
    for (let k = 1; k <= PRELOAD; k += 1) {
      preload(index + k);
      preload(index - k);
    }
  }

  const viewport = h("div", { class: "stack-viewport", tabIndex: 0 }, img);
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    show(index + (event.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  viewport.addEventListener("keydown", (event) => {
    const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 }[event.key];
    if (step) {
      event.preventDefault();
      show(index + step);
    }
  });
  slider.addEventListener("input", () => show(Number(slider.value)));
  if (instanceIds.length) show(0);
  return h("div", { class: "stack" }, viewport,
    h("div", { class: "stack-controls" }, slider, counter, open));
}
