// Layouts beyond one stack: grids of 1×2 and 2×2 views (the study's series side by side, as Orthanc's Web Viewer
// lays them out), the reference lines of MPR (where the other views' planes cut a view), the slab of the MPR
// planes (thickness in mm and how the samples combine: the reslice API's slab= and mode=) and their rotation
// (coronal and sagittal planes turned about the head-feet axis through the crosshair: oblique planes).
import { query, viewerApi } from "./api.js";
import { dot, sub } from "./geometry.js";
import { PlaneSource } from "./sources.js";

export const GRIDS = { "1x2": 2, "2x2": 4 };
const COLORS = { axial: "#ff5a5a", coronal: "#5ad25a", sagittal: "#5a9bff" };

// The cells of a grid: the series on screen first, then the study's other series in their order (those without
// a volume, such as RT structure sets, left out); when the study has fewer series than cells, the series on screen
// fills the rest too, its cells at slices spread evenly through it.
export async function gridCells(current, others, count, load) {
  const cells = [{ series: current.info, source: current.stack }];
  for (const id of others) {
    if (cells.length >= count) break;
    try {
      const { info, stack } = await load(id);
      cells.push({ series: info, source: stack });
    } catch {
      // not a series of images: nothing to show in a cell
    }
  }
  const copies = count - cells.length + 1; // the first cell and its repeats, spread evenly
  if (copies < 2) return cells;
  const spread = (k) => ({ index: Math.round(((current.stack.count - 1) * (k + 1)) / (copies + 1)) });
  cells[0].slot = spread(0);
  for (let k = 1; k < copies; k += 1) cells.push({ series: current.info, source: current.stack, slot: spread(k) });
  return cells;
}

// Another plane cuts this one's picture on the line a·u + b·v + c = 0 (picture coordinates: pixel i's centre at
// u = i + 0.5); parallel planes do not cut it. The planes drawn are published as data-references.
export function drawReferenceLines(view, ctx, screen) {
  const drawn = [];
  const here = view.plane;
  for (const other of view.references?.() ?? []) {
    const there = other.plane;
    if (!here || !there) continue;
    const a = here.PixelSpacing * dot(here.RowDirection, there.Normal);
    const b = here.PixelSpacing * dot(here.ColumnDirection, there.Normal);
    if (Math.hypot(a, b) < 1e-6) continue;
    const c = dot(sub(here.Origin, there.Origin), there.Normal) - (a + b) / 2;
    const far = 10 * Math.max(...here.Size);
    const ends = Math.abs(b) > Math.abs(a) ? [-far, far].map((u) => [u, -(c + a * u) / b])
      : [-far, far].map((v) => [-(c + b * v) / a, v]);
    const [[x0, y0], [x1, y1]] = ends.map(screen);
    ctx.strokeStyle = COLORS[other.source.plane] || "#ff5aff";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
    drawn.push(other.source.plane);
  }
  view.element.dataset.references = drawn.join(",");
}

// The MPR planes' slab arguments: none when the thickness is 0.
export function slabArgs() {
  const thickness = Number(document.querySelector("#slab").value);
  return thickness > 0 ? { slab: thickness, mode: document.querySelector("#slab-mode").value } : {};
}

export function wireSlab(apply) {
  for (const id of ["#slab", "#slab-mode"]) document.querySelector(id).addEventListener("change", apply);
}

const fixed = (vector) => vector.map((v) => v.toFixed(4)).join(",");

// A coronal or sagittal plane turned by an angle about the head-feet axis (+z) through a point: the reslice API's
// oblique plane (normal, up superior, center). It keeps its name (data-plane, reference line colour); its slices
// are positions along the turned normal, min(Spacing) apart across the volume (index slots become positions).
export class ObliqueSource extends PlaneSource {
  constructor(named, degrees, center) {
    super(named.seriesId, named.plane);
    const turn = (degrees * Math.PI) / 180;
    const [x, y, z] = named.normal;
    this.normal = [x * Math.cos(turn) - y * Math.sin(turn), x * Math.sin(turn) + y * Math.cos(turn), z];
    this.oblique = { normal: fixed(this.normal), up: "0,0,1", center: fixed(center) };
  }

  url(slot, extra) {
    const position = slot.index !== undefined ? this.first + slot.index * this.step : slot.position;
    const at = position === undefined ? {} : { position: position.toFixed(3) };
    const args = { ...at, ...this.oblique, ...this.params, ...extra };
    return `${viewerApi(this.seriesId, "/reslice/oblique")}?${query(args)}`;
  }

  key(slot) {
    return this.url(slot, {});
  }

  // The volume's extent along the normal: its corner voxels' centres projected on it.
  open(volume) {
    const along = [0, 1, 2, 3, 4, 5, 6, 7].map((corner) => dot(voxelPoint(volume,
      volume.Size.map((size, n) => ((corner >> n) & 1) * (size - 1))), this.normal));
    this.step = Math.min(...volume.Spacing);
    this.first = Math.min(...along);
    this.count = Math.floor((Math.max(...along) - this.first) / this.step) + 1;
    return this;
  }
}

// The patient point of a (continuous) voxel index [x, y, z] of a volume (its mean slice gap along z).
function voxelPoint(volume, index) {
  return volume.Origin.map((origin, axis) => origin
    + index.reduce((sum, i, n) => sum + i * volume.Spacing[n] * volume.Directions[n][axis], 0));
}

// The centre of a volume's voxel centres (where the planes turn when there is no crosshair).
export const volumeCenter = (volume) => voxelPoint(volume, volume.Size.map((size) => (size - 1) / 2));
