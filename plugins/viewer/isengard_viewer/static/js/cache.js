// A least-recently-used cache of decoded pictures shared by all views, under a memory cap, and a queue that
// fetches the slices around the one on screen (nearest first) with a few requests at a time.

// Decoded pictures are RGBA: a 512x512 slice holds 1 MB, so the cap keeps about 256 of them, and a 2048x2048
// reslice counts for 16.
const MEMORY_CAP = 256 * 1024 * 1024;
const WORKERS = 3;
// The key is the picture's full request URL: every argument (slice, window, layers) is in it, none goes stale.
const entries = new Map(); // URL -> {promise: Promise<ImageBitmap>, bytes: 0 until decoded}
let held = 0; // bytes of the decoded pictures in entries

function cached(key) {
  return entries.has(key);
}

function evict() {
  for (const [key, entry] of entries) {
    if (held <= MEMORY_CAP || entries.size <= 1) return;
    entries.delete(key); // not closed: a view may still be drawing it; the collector frees it
    held -= entry.bytes;
  }
}

// The picture for key, fetched by load() on a miss; a failure is not kept.
export function picture(key, load) {
  let entry = entries.get(key);
  if (entry) {
    entries.delete(key); // re-inserted: most recent last
  } else {
    entry = { promise: load(), bytes: 0 };
    entry.promise.then((bitmap) => {
      if (entries.get(key) !== entry) return; // evicted before it arrived
      entry.bytes = bitmap.width * bitmap.height * 4;
      held += entry.bytes;
      evict();
    }, () => {
      if (entries.get(key) === entry) entries.delete(key);
    });
  }
  entries.set(key, entry);
  return entry.promise;
}

let queue = []; // {owner, key, load}: load() goes through picture() itself
let running = 0;

function pump() {
  while (running < WORKERS && queue.length) {
    const task = queue.shift();
    if (cached(task.key)) continue;
    running += 1;
    task.load().catch(() => {}).finally(() => {
      running -= 1;
      pump();
    });
  }
}

// Replace what owner asked to prefetch: tasks in order of need.
export function prefetch(owner, tasks) {
  queue = queue.filter((task) => task.owner !== owner)
    .concat(tasks.filter((task) => !cached(task.key)).map((task) => ({ owner, ...task })));
  pump();
}
