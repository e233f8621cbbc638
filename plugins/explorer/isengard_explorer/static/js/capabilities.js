// What the server can do, read once: /system (Orthanc 1.12.5's "HasExtendedFind" brings OrderBy to /tools/find,
// which lets the study list sort all matches on the server instead of one page in the browser) and /plugins
// (the pages and links that need a plugin: the Lua console, DICOMweb addresses).
import { api } from "./api.js";

let system = null;
let plugins = null;

export async function serverSystem() {
  if (!system) system = api.get("/system");
  return system;
}

export async function hasExtendedFind() {
  const info = await serverSystem();
  return !!(info.Capabilities && info.Capabilities.HasExtendedFind);
}

export async function serverPlugins() {
  if (!plugins) plugins = api.get("/plugins");
  return plugins;
}

export async function hasPlugin(name) {
  return (await serverPlugins()).includes(name);
}
