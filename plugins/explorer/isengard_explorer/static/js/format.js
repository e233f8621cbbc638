// How DICOM values are shown: dates as ISO, person names without carets, sizes in binary units.

export function formatDate(value) {
  if (!value || !/^\d{8}$/.test(value)) return value || "";
  return `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6, 8)}`;
}

// Orthanc's "LastUpdate" and job times: 20240131T235959
export function formatTimestamp(value) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/.exec(value || "");
  return m ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}` : value || "";
}

// A date input's "2024-01-31" as a DICOM DA value
export function dicomDate(isoDate) {
  return (isoDate || "").replaceAll("-", "");
}

export function formatName(value) {
  return (value || "").split("=")[0].replaceAll("^", " ").trim();
}

export function formatSize(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n)) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

const PLURALS = { study: "studies", series: "series" };

export function plural(count, word) {
  return `${count} ${count === 1 ? word : PLURALS[word] || `${word}s`}`;
}
