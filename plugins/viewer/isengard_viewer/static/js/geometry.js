// Patient coordinates (LPS, mm) of a plane's pixels, from the geometry the reslice API answers with format=json:
// pixel (i, j) is at Origin + i·PixelSpacing·RowDirection + j·PixelSpacing·ColumnDirection. On the canvas,
// picture coordinates (u, v) start at the picture's top-left corner, so pixel i's centre is u = i + 0.5.

export const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const add = (a, b, k = 1) => a.map((value, n) => value + k * b[n]);
export const sub = (a, b) => a.map((value, n) => value - b[n]);
export const distance = (a, b) => Math.hypot(...sub(a, b));

export function toPatient(plane, u, v) {
  const step = plane.PixelSpacing;
  return add(add(plane.Origin, plane.RowDirection, (u - 0.5) * step), plane.ColumnDirection, (v - 0.5) * step);
}

export function toPicture(plane, point) {
  const offset = sub(point, plane.Origin);
  return [dot(offset, plane.RowDirection) / plane.PixelSpacing + 0.5,
    dot(offset, plane.ColumnDirection) / plane.PixelSpacing + 0.5];
}

// The volume axis (0: along rows, 1: down columns, 2: across slices) nearest a direction.
export function nearestAxis(directions, vector) {
  const scores = directions.map((axis) => Math.abs(dot(axis, vector)));
  return scores.indexOf(Math.max(...scores));
}

// The named plane whose normal is the volume axis nearest +x (sagittal), +y (coronal) or +z (axial), as the API
// chooses it: the acquisition plane is the one whose normal is the slices' axis.
export function acquisitionPlane(volume) {
  const normal = volume.Directions[2].map(Math.abs);
  return ["sagittal", "coronal", "axial"][normal.indexOf(Math.max(...normal))];
}

// The patient side a direction points to, as letters (L/R, P/A, S/I), strongest first, components under 0.25 left out.
export function sideOf(vector) {
  const letters = [["R", "L"], ["A", "P"], ["I", "S"]];
  return vector.map((value, axis) => [Math.abs(value), letters[axis][value > 0 ? 1 : 0]])
    .filter(([size]) => size >= 0.25).sort((a, b) => b[0] - a[0]).map(([, letter]) => letter).join("");
}

export function orientationMarkers(plane) {
  const minus = (v) => v.map((x) => -x);
  return { left: sideOf(minus(plane.RowDirection)), right: sideOf(plane.RowDirection),
    top: sideOf(minus(plane.ColumnDirection)), bottom: sideOf(plane.ColumnDirection) };
}
