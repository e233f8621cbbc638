// What the server can do, from /system (read once): Orthanc 1.12.5's "HasExtendedFind" brings OrderBy to
// /tools/find, which lets the study list sort all matches on the server instead of one page in the browser.
import { api } from "./api.js";

let system = null;

export async function serverSystem() {
  if (!system) system = api.get("/system");
  return system;
}

export async function hasExtendedFind() {
  const info = await serverSystem();
  return !!(info.Capabilities && info.Capabilities.HasExtendedFind);
}
