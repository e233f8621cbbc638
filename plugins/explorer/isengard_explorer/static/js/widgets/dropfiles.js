// The files of a drop: folders are walked (File and Directory Entries API), so a whole study folder uploads.

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function walk(entry, out) {
  if (entry.isFile) {
    out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    return;
  }
  const reader = entry.createReader();
  // readEntries answers in batches (100 in Chromium) until it answers an empty one
  for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
    for (const child of batch) await walk(child, out);
  }
}

export async function collectDropped(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry());
  if (!entries.length || entries.some((e) => !e)) return [...dataTransfer.files];
  const out = [];
  for (const entry of entries) await walk(entry, out);
  return out;
}
