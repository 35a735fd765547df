// Slides of a case from DICOM WSI metadata: pyramid levels, label, overview, pixel spacing.

import { first, item, personName, values } from "./dicom.js";
import { channelsOf } from "./channels.js";

// Magnification by convention: a 10x objective images about 1 µm per pixel.
const MICRONS_AT_10X = 1.0;

function imageFlavor(ds) {
  return (values(ds, "ImageType")[2] || "").toUpperCase();
}

function pixelSpacingMm(ds) {
  const shared = item(ds, "SharedFunctionalGroupsSequence");
  const measures = shared && item(shared, "PixelMeasuresSequence");
  const spacing = measures && values(measures, "PixelSpacing");
  if (spacing && spacing.length === 2 && spacing[0] > 0) return [spacing[0], spacing[1]];
  return null;
}

function objectivePower(ds) {
  const path = item(ds, "OpticalPathSequence");
  const power = path && first(path, "ObjectiveLensPower");
  return power > 0 ? Number(power) : null;
}

function level(ds, transferSyntaxes) {
  const sop = first(ds, "SOPInstanceUID");
  const width = first(ds, "TotalPixelMatrixColumns");
  const height = first(ds, "TotalPixelMatrixRows");
  const tileWidth = first(ds, "Columns");
  const tileHeight = first(ds, "Rows");
  const tiledFull = (first(ds, "DimensionOrganizationType") || "TILED_FULL") === "TILED_FULL";
  return {
    sop,
    series: first(ds, "SeriesInstanceUID"),
    width,
    height,
    tileWidth,
    tileHeight,
    tilesAcross: Math.ceil(width / tileWidth),
    tilesDown: Math.ceil(height / tileHeight),
    frames: first(ds, "NumberOfFrames") || 1,
    transferSyntax: transferSyntaxes.get(sop) || "",
    spacing: pixelSpacingMm(ds),
    opticalPath: String(first(item(ds, "OpticalPathSequence") || {}, "OpticalPathIdentifier") ?? ""),
    monochrome: first(ds, "PhotometricInterpretation") === "MONOCHROME2",
    bits: first(ds, "BitsAllocated") || 8,
    // TILED_SPARSE: where each frame sits, from its plane position; missing tiles stay empty.
    sparseFrames: tiledFull ? null : sparseFrameMap(ds, tileWidth, tileHeight),
  };
}

// "col,row" -> 1-based frame number; the first frame at a position wins (first focal plane
// and optical path when there are several).
function sparseFrameMap(ds, tileWidth, tileHeight) {
  const frames = new Map();
  values(ds, "PerFrameFunctionalGroupsSequence").forEach((group, index) => {
    const position = item(group, "PlanePositionSlideSequence");
    if (!position) return;
    const col = Math.floor((first(position, "ColumnPositionInTotalImagePixelMatrix") - 1) / tileWidth);
    const row = Math.floor((first(position, "RowPositionInTotalImagePixelMatrix") - 1) / tileHeight);
    const key = `${col},${row}`;
    if (!frames.has(key)) frames.set(key, index + 1);
  });
  return frames;
}

// Group the instances of a study into slides. A slide is a series with VOLUME images; its
// label and overview may sit in the same series or in another one with the same container id.
export function slidesOfStudy(instances, transferSyntaxes = new Map()) {
  const wsi = instances.filter((ds) => first(ds, "Modality") === "SM" || values(ds, "ImageType").length > 2);
  const bySeries = new Map();
  for (const ds of wsi) {
    const uid = first(ds, "SeriesInstanceUID");
    if (!bySeries.has(uid)) bySeries.set(uid, []);
    bySeries.get(uid).push(ds);
  }
  const associated = (flavor, series, container) =>
    series.find((ds) => imageFlavor(ds) === flavor) ||
    wsi.find((ds) => imageFlavor(ds) === flavor && container && first(ds, "ContainerIdentifier") === container);

  const slides = [];
  for (const [seriesUid, series] of bySeries) {
    const volumes = series.filter((ds) => imageFlavor(ds) === "VOLUME" && first(ds, "TotalPixelMatrixColumns"));
    if (!volumes.length) continue;
    const levels = [];
    const all = volumes.map((v) => level(v, transferSyntaxes)).sort((a, b) => b.width - a.width);
    for (const ds of all) {
      // One entry per size: further focal planes or optical paths of a level are left out,
      // except the channels of a fluorescence slide (one MONOCHROME2 instance per path).
      if (!levels.some((l) => l.width === ds.width && l.height === ds.height)) levels.push(ds);
    }
    const base = volumes.find((ds) => first(ds, "SOPInstanceUID") === levels[0].sop);
    const channels = levels[0].monochrome ? channelsOf(volumes.filter((ds) => sameSize(ds, levels[0]))) : [];
    if (channels.length) {
      for (const lvl of levels) {
        const paths = new Map(all.filter((l) => l.width === lvl.width && l.height === lvl.height).map((l) => [l.opticalPath, l]));
        lvl.channels = channels.map((c) => paths.get(c.id) || null); // per channel: its instance here
      }
    }
    const container = first(base, "ContainerIdentifier") || "";
    const specimen = item(base, "SpecimenDescriptionSequence");
    const label = associated("LABEL", series, container);
    const overview = associated("OVERVIEW", series, container);
    const spacing = levels[0].spacing;
    const power = objectivePower(base);
    slides.push({
      study: first(base, "StudyInstanceUID"),
      series: seriesUid,
      seriesNumber: first(base, "SeriesNumber") ?? 0,
      description: first(base, "SeriesDescription") || "",
      container,
      specimen: specimen ? first(specimen, "SpecimenShortDescription") || first(specimen, "SpecimenIdentifier") || "" : "",
      levels, // largest first
      channels, // fluorescence: one entry per optical path, else []
      width: levels[0].width,
      height: levels[0].height,
      micronsPerPixel: spacing ? spacing[1] * 1000 : null,
      // Magnification at level 0: from the pixel spacing when known, else the objective.
      baseMagnification: spacing ? (10 * MICRONS_AT_10X) / (spacing[1] * 1000) : power,
      objectivePower: power,
      label: label && ref(label),
      labelText: label ? first(label, "LabelText") || first(label, "BarcodeValue") || "" : "",
      overview: overview && ref(overview),
      patient: {
        name: personName(first(base, "PatientName")),
        id: first(base, "PatientID") || "",
        birthDate: first(base, "PatientBirthDate") || "",
        sex: first(base, "PatientSex") || "",
      },
      accession: first(base, "AccessionNumber") || "",
      studyDate: first(base, "StudyDate") || "",
      manufacturer: [first(base, "Manufacturer"), first(base, "ManufacturerModelName")].filter(Boolean).join(" "),
    });
  }
  slides.sort((a, b) => a.seriesNumber - b.seriesNumber || a.container.localeCompare(b.container));
  return slides;
}

function sameSize(ds, lvl) {
  return first(ds, "TotalPixelMatrixColumns") === lvl.width && first(ds, "TotalPixelMatrixRows") === lvl.height;
}

function ref(ds) {
  return {
    study: first(ds, "StudyInstanceUID"),
    series: first(ds, "SeriesInstanceUID"),
    sop: first(ds, "SOPInstanceUID"),
  };
}

// 1-based frame number of tile (col, row), or undefined where a sparse level has no tile.
// TILED_FULL: frames run row by row over the first focal plane and optical path.
export function frameNumber(lvl, col, row) {
  if (lvl.sparseFrames) return lvl.sparseFrames.get(`${col},${row}`);
  return row * lvl.tilesAcross + col + 1;
}
