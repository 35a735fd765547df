// The same slide in dicom-microscopy-viewer, an independent DICOMweb viewer, over our DICOMweb.

import { DICOMWEB, first, qido } from "./dicom.js";
import { installHeader, showError } from "./nav.js";

const DMV = window.dicomMicroscopyViewer;
const ANNOTATIONS = "1.2.840.10008.5.1.4.1.1.91.1"; // Microscopy Bulk Simple Annotations
const studyUid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
document.getElementById("back").href = `/viewer/${studyUid}`;
window.tesseraInterop = { viewer: null, annotationGroups: null };

installHeader();
main().catch((error) => showError("#error", error));

async function main() {
  const series = new URLSearchParams(location.search).get("series") || (await firstSlideSeries());
  const client = new window.DICOMwebClient.api.DICOMwebClient({ url: `${location.origin}${DICOMWEB}` });
  const metadata = await client.retrieveSeriesMetadata({ studyInstanceUID: studyUid, seriesInstanceUID: series });
  const images = metadata
    .map((m) => new DMV.metadata.VLWholeSlideMicroscopyImage({ metadata: m }))
    .filter((image) => ["VOLUME", "THUMBNAIL"].includes(image.ImageType[2]));
  if (!images.length) throw new Error("This series has no VOLUME images.");
  const viewer = new DMV.viewer.VolumeImageViewer({ client, metadata: images });
  viewer.render({ container: document.getElementById("dmv") });
  window.tesseraInterop.viewer = viewer;
  window.tesseraInterop.annotationGroups = await showAnnotations(client, viewer, images[0]);
}

// The annotations saved in our viewer, as dicom-microscopy-viewer reads them from DICOMweb: the
// newest instance of each annotation series on this slide (one series per person).
async function showAnnotations(client, viewer, image) {
  const rows = await qido(`/studies/${studyUid}/instances`, { SOPClassUID: ANNOTATIONS, includefield: "0020000E" });
  let shown = 0;
  for (const series of new Set(rows.map((r) => first(r, "SeriesInstanceUID")))) {
    const metadata = await client.retrieveSeriesMetadata({ studyInstanceUID: studyUid, seriesInstanceUID: series });
    const sets = metadata
      .map((m) => new DMV.metadata.MicroscopyBulkSimpleAnnotations({ metadata: m }))
      .filter((ann) => ann.FrameOfReferenceUID === image.FrameOfReferenceUID)
      .sort((a, b) => Number(b.InstanceNumber) - Number(a.InstanceNumber));
    if (!sets.length) continue;
    viewer.addAnnotationGroups(sets[0]);
    for (const group of sets[0].AnnotationGroupSequence) {
      viewer.showAnnotationGroup(group.AnnotationGroupUID);
      shown += 1;
    }
  }
  return shown;
}

async function firstSlideSeries() {
  const rows = await qido(`/studies/${studyUid}/instances`, { ImageType: "*VOLUME*", includefield: "0020000E" });
  if (!rows.length) throw new Error("This study has no whole-slide images.");
  return first(rows[0], "SeriesInstanceUID");
}
