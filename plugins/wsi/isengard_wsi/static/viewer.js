// The slide viewer: the pyramid of a whole-slide series (../pyramids/{series}) drawn tile by tile (../tiles/...)
// with OpenLayers (ol.js, the global `ol`), as orthanc-wsi's viewer does, plus a zoom-to-fit button, an
// overview and a scale line. Every URL is relative to /wsi/app/, so the page works behind a proxy's prefix.
//
// Coordinates are base-level pixels, y pointing up as OpenLayers wants: the slide covers [0, -height, width, 0]
// and its tile grid's origin is its top-left corner, so OpenLayers' tile rows count downwards as orthanc-wsi's do.
// OpenLayers orders levels coarsest first (zoom 0), the pyramid finest first (level 0).
const ol = window.ol;

// VL Whole Slide Microscopy Image Storage (PS3.4 B.5), and the ImageType value 3 of its pictures of the glass.
const WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6";
const NOT_LEVELS = new Set(["LABEL", "OVERVIEW"]);

const mapElement = document.getElementById("map");
const statusElement = document.getElementById("status");

async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// A multi-valued DS of Orthanc's "simplify" JSON ("0.25\\0.25"), as numbers.
function numbers(value) {
  return String(value ?? "").split("\\").map(Number);
}

// Millimetres per base-level pixel from one instance's tags, or null. Any level gives it: its PixelSpacing (row,
// column; PS3.3 C.7.6.16.2.1) times its width over the base width, else the slide's ImagedVolumeWidth (mm) over
// the base width.
function spacingFromTags(tags, baseWidth) {
  const imageType = String(tags.ImageType ?? "").split("\\");
  if (tags.SOPClassUID !== WSI_SOP_CLASS || NOT_LEVELS.has((imageType[2] || "").toUpperCase())) return null;
  const columns = Number(tags.TotalPixelMatrixColumns);
  if (!(columns > 0)) return null;
  const measures = tags.SharedFunctionalGroupsSequence?.[0]?.PixelMeasuresSequence?.[0];
  const columnSpacing = numbers(measures?.PixelSpacing)[1];
  if (columnSpacing > 0) return (columnSpacing * columns) / baseWidth;
  const width = Number(tags.ImagedVolumeWidth);
  return width > 0 ? width / baseWidth : null;
}

// The pyramid's own figure when it has one, else the tags of the series' instances, the base level's preferred.
async function pixelSpacing(pyramid, seriesId) {
  if (pyramid.ImagedVolumeWidth > 0) return pyramid.ImagedVolumeWidth / pyramid.TotalWidth;
  const series = await getJson(`../../series/${encodeURIComponent(seriesId)}`);
  let found = null;
  for (const id of series.Instances) {
    const tags = await getJson(`../../instances/${id}/tags?simplify`);
    const spacing = spacingFromTags(tags, pyramid.TotalWidth);
    if (spacing && Number(tags.TotalPixelMatrixColumns) === pyramid.TotalWidth) return spacing;
    found ??= spacing;
  }
  return found;
}

function tileSource(pyramid, seriesId, projection, extent) {
  const count = pyramid.Resolutions.length;
  const tileGrid = new ol.tilegrid.TileGrid({
    extent,
    resolutions: [...pyramid.Resolutions].reverse(),
    tileSizes: [...pyramid.TilesSizes].reverse(),
  });
  return new ol.source.TileImage({
    projection,
    tileGrid,
    wrapX: false,
    // Tiles past a level's tile count (a level whose height rounds differently from its width) do not exist.
    tileUrlFunction: ([z, x, y]) => {
      const level = count - 1 - z;
      const [columns, rows] = pyramid.TilesCount[level];
      if (x < 0 || y < 0 || x >= columns || y >= rows) return undefined;
      return `../tiles/${encodeURIComponent(seriesId)}/${level}/${x}/${y}`;
    },
  });
}

// The state a script or a test can read off the page: the pyramid level on screen, and the part of the slide in
// view as base-level pixels "left,top,right,bottom" (top-left origin).
function publishView(map, source, count) {
  const view = map.getView();
  const z = source.getTileGrid().getZForResolution(view.getResolution(), source.zDirection);
  const [left, bottom, right, top] = view.calculateExtent(map.getSize());
  mapElement.dataset.level = String(count - 1 - z);
  mapElement.dataset.visible = [left, -top, right, -bottom].map(Math.round).join(",");
}

function showSlide(pyramid, seriesId) {
  const width = pyramid.TotalWidth;
  const height = pyramid.TotalHeight;
  const extent = [0, -height, width, 0];
  const projection = new ol.proj.Projection({ code: "slide-pixels", units: "pixels", extent });
  const source = tileSource(pyramid, seriesId, projection, extent);
  const background = pyramid.BackgroundColor;
  if (typeof background === "string" && CSS.supports("color", background)) {
    mapElement.style.backgroundColor = background;
  }
  // Zoom steps are powers of two from 1 (orthanc-wsi's choice: never magnify past the scanner's pixels), as
  // pyramid levels usually are, up to a view where the slide is a thumbnail.
  const maxResolution = 2 ** Math.ceil(Math.log2(Math.max(width, height, 64) / 64));
  const view = new ol.View({
    projection,
    extent,
    constrainOnlyCenter: true,
    showFullExtent: true,
    enableRotation: false,
    minResolution: 1,
    maxResolution,
    // Defined before the map exists, which the overview needs to start; fit() below then sizes it to the window.
    center: [width / 2, -height / 2],
    resolution: maxResolution,
  });
  const map = new ol.Map({
    target: mapElement,
    layers: [new ol.layer.Tile({ source, extent })],
    view,
    controls: ol.control.defaults.defaults({ attribution: false, rotate: false }).extend([
      new ol.control.ZoomToExtent({ extent, label: "⤢", tipLabel: "Fit the whole slide" }),
      new ol.control.OverviewMap({
        collapsed: false,
        tipLabel: "Overview",
        label: "‹", // at the right edge: opens leftwards, closes rightwards
        collapseLabel: "›",
        layers: [new ol.layer.Tile({ source, extent })],
        view: new ol.View({ projection, enableRotation: false, maxResolution }),
      }),
    ]),
    interactions: ol.interaction.defaults.defaults({ altShiftDragRotate: false, pinchRotate: false }),
  });
  view.fit(extent);
  map.on("moveend", () => publishView(map, source, pyramid.Resolutions.length));
  return { map, projection };
}

// The scale line comes once the spacing is known, which may take a few requests: the tiles do not wait for it.
function addScaleLine(map, projection, millimetres) {
  projection.setGetPointResolution((resolution) => (resolution * millimetres) / 1000);
  map.addControl(new ol.control.ScaleLine({ units: "metric", minWidth: 100 }));
}

function fail(message) {
  statusElement.hidden = false;
  statusElement.classList.add("error");
  statusElement.textContent = message;
}

async function main() {
  const seriesId = new URLSearchParams(window.location.search).get("series");
  if (!seriesId) {
    fail("No series given: open this page as viewer.html?series={Orthanc series ID}.");
    return;
  }
  let pyramid;
  try {
    pyramid = await getJson(`../pyramids/${encodeURIComponent(seriesId)}`);
  } catch (error) {
    fail(`Series ${seriesId} has no whole-slide pyramid (${error.message}).`);
    return;
  }
  statusElement.hidden = true;
  document.title = `${document.title} - ${seriesId}`;
  const { map, projection } = showSlide(pyramid, seriesId);
  const millimetres = await pixelSpacing(pyramid, seriesId).catch(() => null);
  if (millimetres) addScaleLine(map, projection, millimetres);
}

main();
