// The same slide in dicom-microscopy-viewer, an independent DICOMweb viewer, over our DICOMweb.

import { DICOMWEB, first, qido } from "./dicom.js";
import { installHeader, showError } from "./nav.js";

const DMV = window.dicomMicroscopyViewer;
const studyUid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
document.getElementById("back").href = `/viewer/${studyUid}`;
window.tesseraInterop = { viewer: null };

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
}

async function firstSlideSeries() {
  const rows = await qido(`/studies/${studyUid}/instances`, { ImageType: "*VOLUME*", includefield: "0020000E" });
  if (!rows.length) throw new Error("This study has no whole-slide images.");
  return first(rows[0], "SeriesInstanceUID");
}
