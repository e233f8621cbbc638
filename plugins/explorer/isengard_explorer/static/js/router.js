// Hash routes (#/study/ID?x=1): the server serves one page, so links, reloads and the back button just work.

export function parseHash(hash) {
  const raw = (hash || "").replace(/^#/, "") || "/studies";
  const [path, query = ""] = raw.split("?");
  return { path, params: new URLSearchParams(query) };
}

// routes: [["/study/:id", render], ...]; render(main, {id}, params) may be async.
export function matchRoute(routes, path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, render] of routes) {
    const expected = pattern.split("/").filter(Boolean);
    if (expected.length !== parts.length) continue;
    const args = {};
    const ok = expected.every((piece, i) => {
      if (piece.startsWith(":")) {
        args[piece.slice(1)] = decodeURIComponent(parts[i]);
        return true;
      }
      return piece === parts[i];
    });
    if (ok) return { render, args };
  }
  return null;
}

export function navigate(path, params) {
  const query = params ? new URLSearchParams(params).toString() : "";
  window.location.hash = query ? `${path}?${query}` : path;
}
