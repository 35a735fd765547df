// Store DICOM files recorded on the device through STOW-RS, with upload progress.

export function stowUpload(files, progress, status) {
  if (!files.length) {
    status.textContent = "choose one or more DICOM files first";
    return Promise.resolve();
  }
  const boundary = `tessera-${crypto.randomUUID()}`;
  const parts = [];
  for (const file of files) {
    parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, "\r\n");
  }
  parts.push(`--${boundary}--\r\n`);
  const body = new Blob(parts);
  progress.hidden = false;
  progress.value = 0;
  status.textContent = `uploading ${files.length} file(s)`;
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/dicomweb/studies");
    xhr.setRequestHeader("Content-Type", `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.setRequestHeader("Accept", "application/dicom+json");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) progress.value = e.loaded / e.total;
    };
    xhr.onload = () => {
      let stored = 0;
      let failed = 0;
      try {
        const answer = JSON.parse(xhr.responseText || "{}");
        stored = answer["00081199"]?.Value?.length || 0;
        failed = answer["00081198"]?.Value?.length || 0;
      } catch {
        // a non-JSON error page: the status line says enough
      }
      progress.value = 1;
      status.dataset.stored = String(stored);
      status.textContent = xhr.status < 300 || xhr.status === 202
        ? `stored ${stored}, failed ${failed}`
        : `upload refused: ${xhr.status} ${xhr.statusText} (stored ${stored}, failed ${failed})`;
      resolve();
    };
    xhr.onerror = () => reject(new Error("upload interrupted"));
    xhr.send(body);
  });
}
