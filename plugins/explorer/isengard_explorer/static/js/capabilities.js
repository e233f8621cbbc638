// What the server can do, read once: /system (OrderBy in /tools/find lets the study list sort all matches on the
// server instead of one page in the browser) and /plugins
// (the pages and links that need a plugin: the Lua console, DICOMweb addresses).
import { api } from "./api.js";

let system = null;
let plugins = null;

export async function serverSystem() {
  if (!system) system = api.get("/system");
  return system;
}

// OrderBy in /tools/find: Orthanc says so with HasExtendedFind; Isengard has it without the rest of that
// capability (ResponseContent...), so it does not claim it.
export async function hasOrderBy() {
  const info = await serverSystem();
  return !!((info.Capabilities && info.Capabilities.HasExtendedFind) || info.IsengardVersion);
}

export async function serverPlugins() {
  if (!plugins) plugins = api.get("/plugins");
  return plugins;
}

export async function hasPlugin(name) {
  return (await serverPlugins()).includes(name);
}
