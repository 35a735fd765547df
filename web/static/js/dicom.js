// DICOM JSON (PS3.18 F.2) helpers and DICOMweb calls shared by the pages.

export const DICOMWEB = "/dicomweb";

export const TAG = {
  PatientName: "00100010",
  PatientID: "00100020",
  PatientBirthDate: "00100030",
  PatientSex: "00100040",
  StudyInstanceUID: "0020000D",
  StudyDate: "00080020",
  StudyTime: "00080030",
  AccessionNumber: "00080050",
  StudyDescription: "00081030",
  ModalitiesInStudy: "00080061",
  NumberOfStudyRelatedSeries: "00201206",
  NumberOfStudyRelatedInstances: "00201208",
  SeriesInstanceUID: "0020000E",
  SeriesNumber: "00200011",
  SeriesDescription: "0008103E",
  Modality: "00080060",
  SOPInstanceUID: "00080018",
  SOPClassUID: "00080016",
  InstanceNumber: "00200013",
  ImageType: "00080008",
  Rows: "00280010",
  Columns: "00280011",
  NumberOfFrames: "00280008",
  PhotometricInterpretation: "00280004",
  TotalPixelMatrixColumns: "00480006",
  TotalPixelMatrixRows: "00480007",
  TotalPixelMatrixFocalPlanes: "00480303",
  DimensionOrganizationType: "00209311",
  SharedFunctionalGroupsSequence: "52009229",
  PerFrameFunctionalGroupsSequence: "52009230",
  PlanePositionSlideSequence: "0048021A",
  ColumnPositionInTotalImagePixelMatrix: "0048021E",
  RowPositionInTotalImagePixelMatrix: "0048021F",
  PixelMeasuresSequence: "00289110",
  PixelSpacing: "00280030",
  ImagedVolumeWidth: "00480001",
  OpticalPathSequence: "00480105",
  ObjectiveLensPower: "00480112",
  OpticalPathIdentifier: "00480106",
  OpticalPathDescription: "00480107",
  IlluminationWaveLength: "00220055",
  ImagePathFilterPassThroughWavelength: "00220003",
  LightPathFilterPassBand: "00220002",
  BitsAllocated: "00280100",
  ContainerIdentifier: "00400512",
  SpecimenDescriptionSequence: "00400560",
  SpecimenIdentifier: "00400551",
  SpecimenShortDescription: "00400600",
  Manufacturer: "00080070",
  ManufacturerModelName: "00081090",
  FrameTime: "00181063",
  CineRate: "00180040",
  RecommendedDisplayFrameRate: "00082144",
  AvailableTransferSyntaxUID: "00083002",
  LabelText: "22000002",
  BarcodeValue: "22000005",
};

// Transfer syntaxes whose frames are JPEG bitstreams a browser decodes natively.
export const BROWSER_JPEG = new Set(["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"]);

export function values(ds, keyword) {
  const element = ds && ds[TAG[keyword]];
  return (element && element.Value) || [];
}

export function first(ds, keyword) {
  return values(ds, keyword)[0];
}

// First item of a sequence, or undefined.
export function item(ds, keyword) {
  return first(ds, keyword);
}

export function personName(value) {
  if (!value) return "";
  const text = typeof value === "string" ? value : value.Alphabetic || "";
  return text.replace(/\^+/g, " ").trim();
}

export function formatDate(da) {
  return da && da.length === 8 ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da || "";
}

export class HttpError extends Error {
  constructor(response, text) {
    super(`${response.status} ${response.statusText}: ${reasonOf(text)}`.trim());
    this.status = response.status;
  }
}

// Why an answer is an error: the detail of the hub's problem document, else the text as it came.
function reasonOf(text) {
  try {
    const detail = JSON.parse(text)?.detail;
    if (typeof detail === "string") return detail;
  } catch {
    // not JSON: a proxy's page, say
  }
  return text;
}

export async function getJson(url, init = {}) {
  const response = await fetch(url, {
    ...init,
    headers: { Accept: "application/dicom+json, application/json", ...(init.headers || {}) },
  });
  if (response.status === 204) return [];
  if (!response.ok) throw new HttpError(response, await response.text());
  return response.json();
}

export function qidoUrl(path, params = {}) {
  const url = new URL(DICOMWEB + path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    for (const v of [].concat(value)) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.append(key, v);
    }
  }
  return url.pathname + url.search;
}

export function qido(path, params = {}) {
  return getJson(qidoUrl(path, params));
}

export function instanceUrl(study, series, sop) {
  return `${DICOMWEB}/studies/${study}/series/${series}/instances/${sop}`;
}

// Fetch one frame as an image Blob the browser can decode. JPEG-stored frames come as they are
// stored (no server work); anything else is rendered to JPEG by the server.
export async function fetchFrameBlob(frameUrl, transferSyntax, signal) {
  const native = BROWSER_JPEG.has(transferSyntax);
  const url = native ? frameUrl : `${frameUrl}/rendered`;
  const response = await fetch(url, { headers: { Accept: "image/jpeg" }, signal });
  if (!response.ok) throw new HttpError(response, await response.text());
  const type = response.headers.get("Content-Type") || "image/jpeg";
  const body = await response.arrayBuffer();
  if (type.startsWith("multipart/")) return firstPart(new Uint8Array(body), type);
  return new Blob([body], { type });
}

// The body of the first part of a multipart/related response.
export function firstPart(bytes, contentType) {
  const match = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!match) throw new Error("multipart response without a boundary");
  const delimiter = new TextEncoder().encode(`--${match[1]}`);
  const start = indexOf(bytes, delimiter, 0);
  const headersEnd = indexOf(bytes, new TextEncoder().encode("\r\n\r\n"), start);
  const end = indexOf(bytes, new TextEncoder().encode(`\r\n--${match[1]}`), headersEnd);
  if (start < 0 || headersEnd < 0 || end < 0) throw new Error("malformed multipart response");
  const headers = new TextDecoder().decode(bytes.subarray(start, headersEnd));
  const partType = /content-type:\s*([^\r\n;]+)/i.exec(headers);
  return new Blob([bytes.subarray(headersEnd + 4, end)], {
    type: partType ? partType[1].trim() : "application/octet-stream",
  });
}

function indexOf(haystack, needle, from) {
  outer: for (let i = Math.max(0, from); i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

// Where to open a study: the slide viewer for SM, the cine viewer for US, else the browser.
export function studyPage(studyUid, modalities) {
  if (modalities.includes("SM")) return `/viewer/${studyUid}`;
  if (modalities.includes("US")) return `/ultrasound/${studyUid}`;
  return `/studies?study=${encodeURIComponent(studyUid)}`;
}

export async function openStudy(studyUid) {
  const rows = await qido("/studies", {
    StudyInstanceUID: studyUid,
    includefield: "ModalitiesInStudy",
  });
  location.assign(studyPage(studyUid, rows.length ? values(rows[0], "ModalitiesInStudy") : []));
}
