// The only way the interface talks to the server: Orthanc's public REST API, on this origin.
// The browser adds the HTTP Basic credentials it prompted for, so no code here handles passwords.

class ApiError extends Error {
  constructor(status, body) {
    const details = body && (body.Details || body.Message);
    super(details ? `${status}: ${details}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// The server's root, from this module's own address (<root>/ui/js/api.js): REST paths are resolved against it, so
// the interface works behind a reverse proxy that serves the server under a prefix (https://host/pacs/ui/).
const ROOT = new URL("../../", import.meta.url);

// The address of a REST path ("/studies/..." becomes "/prefix/studies/..."), for fetch() and for the links and
// pictures of the pages.
export function url(path) {
  const resolved = new URL(path.replace(/^\//, ""), ROOT);
  return resolved.pathname + resolved.search;
}

// body: JSON, unless a text/plain type is given (the routes that take raw text, like a Lua script)
async function request(method, path, body, type = "application/json") {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = type;
    options.body = type === "application/json" ? JSON.stringify(body) : body;
  }
  const response = await fetch(url(path), options);
  const text = await response.text();
  let data = text;
  if ((response.headers.get("Content-Type") || "").includes("json") && text) {
    data = JSON.parse(text);
  }
  if (!response.ok) {
    throw new ApiError(response.status, typeof data === "object" ? data : null);
  }
  return data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body),
  postText: (path, text) => request("POST", path, text, "text/plain"),
  put: (path, body) => request("PUT", path, body),
  delete: (path) => request("DELETE", path),
};

// POST /instances with upload progress, which fetch() cannot report: XMLHttpRequest can.
// Resolves with Orthanc's answer (a list of results for a ZIP, one result for a DICOM file).
export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url("/instances"));
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, null)));
    xhr.send(file);
  });
}
