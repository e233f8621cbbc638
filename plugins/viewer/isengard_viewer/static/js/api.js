// Requests to this server, relative to /viewer/ (so a reverse proxy's prefix stays): the viewer API under api/,
// the REST API one level up. Errors carry Orthanc's JSON body, whose Message and Details say what went wrong.

export class ApiError extends Error {
  constructor(status, body, url) {
    const text = body && (body.Details || body.Message) ? [body.Message, body.Details].filter(Boolean).join(": ") : "";
    super(text || `HTTP ${status} for ${url}`);
    this.status = status;
    this.body = body;
  }
}

async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...options });
  } catch (error) {
    throw new ApiError(0, null, `${url} (${error.message})`);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body, url);
  }
  return response;
}

export async function getJson(url) {
  return (await request(url)).json();
}

// The Orthanc id of a resource given by its DICOM UID (or already by its id): POST /tools/lookup.
const ORTHANC_ID = /^[0-9a-f]{8}(-[0-9a-f]{8}){4}$/;

export async function orthancId(value, type) {
  if (ORTHANC_ID.test(value)) return value;
  const found = await (await request(rest("/tools/lookup"), { method: "POST", body: value })).json();
  const match = found.find((item) => item.Type === type);
  if (!match) throw new ApiError(404, { Message: "Unknown resource", Details: `No ${type.toLowerCase()} ${value}` }, value);
  return match.ID;
}

// A binary answer (a plane's float32 values as .npy).
export async function getBuffer(url) {
  return (await request(url)).arrayBuffer();
}

// A picture, decoded off the main thread; ImageBitmaps need no img-src in the Content-Security-Policy.
export async function getBitmap(url) {
  return createImageBitmap(await (await request(url)).blob());
}

export const rest = (path) => `..${path}`;
export const viewerApi = (seriesId, path) => `api/series/${encodeURIComponent(seriesId)}${path}`;

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) search.set(name, String(value));
  }
  return search.toString();
}
