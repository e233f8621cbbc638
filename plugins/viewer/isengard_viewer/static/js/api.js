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

async function request(url) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin" });
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
