// A small least-recently-used cache of decoded pictures shared by all views, and a queue that fetches the slices
// around the one on screen (nearest first) with a few requests at a time.

const CAPACITY = 160;
const WORKERS = 3;
// The key is the picture's full request URL: every argument (slice, window, layers) is in it, none goes stale.
const entries = new Map(); // URL -> Promise<ImageBitmap>

function cached(key) {
  return entries.has(key);
}

// The picture for key, fetched by load() on a miss; a failure is not kept.
export function picture(key, load) {
  let promise = entries.get(key);
  if (promise) {
    entries.delete(key); // re-inserted: most recent last
  } else {
    promise = load();
    promise.catch(() => entries.get(key) === promise && entries.delete(key));
  }
  entries.set(key, promise);
  while (entries.size > CAPACITY) {
    const [oldest] = entries.entries().next().value;
    entries.delete(oldest); // not closed: a view may still be drawing it; the collector frees it
  }
  return promise;
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
