// Where a view's pictures come from. A plane of the volume (the reslice API: exact windowing on real-world values,
// geometry with format=json), or, for a series the API cannot order in space, its frames as the kernel renders
// them (/instances/{id}/frames/{n}/rendered), in the volume's stack order, without geometry.
import { getBitmap, getJson, query, rest, viewerApi } from "./api.js";
import { picture } from "./cache.js";
import { nearestAxis } from "./geometry.js";
import { layerArgs } from "./layers.js";

const windowKey = (win) => `${win.center},${win.width}`;

// A slot is {index} (a slice of the volume) or {position} (mm along the plane's normal, between slices too).
const slotArgs = (slot) => (slot.position !== undefined ? { position: slot.position.toFixed(3) } : { index: slot.index });

export class PlaneSource {
  constructor(seriesId, plane) {
    this.seriesId = seriesId;
    this.plane = plane;
    this.params = {}; // the slab (slab=, mode=) of MPR planes
    this.geometries = new Map();
  }

  url(slot, extra) {
    const args = { ...slotArgs(slot), ...this.params, ...extra };
    return `${viewerApi(this.seriesId, `/reslice/${this.plane}`)}?${query(args)}`;
  }

  key(slot) {
    return `${this.seriesId}/${this.plane}/${JSON.stringify({ ...slotArgs(slot), ...this.params })}`;
  }

  // How many slices along the plane's normal, and where the first and last are (to go from a position to a slice).
  async open(volume) {
    const middle = await getJson(this.url({}, { format: "json" }));
    this.normal = middle.Normal;
    this.count = volume.Size[nearestAxis(volume.Directions, middle.Normal)];
    const [first, last] = await Promise.all([this.geometry({ index: 0 }), this.geometry({ index: this.count - 1 })]);
    this.first = first.Position;
    this.step = this.count > 1 ? (last.Position - first.Position) / (this.count - 1) : 0;
    return this;
  }

  nearestIndex(position) {
    const index = this.step ? Math.round((position - this.first) / this.step) : 0;
    return Math.min(this.count - 1, Math.max(0, index));
  }

  geometry(slot) {
    const key = this.key(slot);
    if (!this.geometries.has(key)) {
      const promise = getJson(this.url(slot, { format: "json" }));
      promise.catch(() => this.geometries.delete(key));
      this.geometries.set(key, promise);
    }
    return this.geometries.get(key);
  }

  // The picture's URL, with the layers chosen (layers.js): the cache's key, so a layer change is never stale.
  // A grey picture is a JPEG of quality 95 (as Orthanc's Web Viewer sends them): encoded in under 1 ms where a PNG
  // takes 16; pictures with layers stay PNG, whose 1-2 pixel coloured lines JPEG's chroma subsampling would blur.
  pictureKey(slot, win) {
    const layers = layerArgs(this.seriesId);
    const format = Object.keys(layers).length ? {} : { format: "jpeg", quality: 95 };
    return this.url(slot, { window: windowKey(win), ...format, ...layers });
  }

  picture(slot, win) {
    const url = this.pictureKey(slot, win);
    return picture(url, () => getBitmap(url));
  }
}

export class FrameSource {
  constructor(seriesId, slices) {
    this.seriesId = seriesId;
    this.plane = "stack";
    this.slices = slices; // [[instance id, frame], ...]
    this.count = slices.length;
  }

  nearestIndex() {
    return 0;
  }

  async geometry() {
    return null;
  }

  pictureKey(slot, win) {
    const [instance, frame] = this.slices[slot.index];
    return `${rest(`/instances/${instance}/frames/${frame}/rendered`)}?${query(
      { "window-center": win.center, "window-width": win.width })}`;
  }

  picture(slot, win) {
    const url = this.pictureKey(slot, win);
    return picture(url, () => getBitmap(url));
  }
}
