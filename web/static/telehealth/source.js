// Stills recorded at the clinic from the device's own video, at its native size and before the
// browser encodes it for the network, sent losslessly (PNG); the hub stores an Ultrasound Image
// through the archive's ingest path.
export async function sourceStill(video, sessionId, token) {
  if (!video.videoWidth) throw new Error("the device video has not started");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const response = await fetch(`/api/telehealth/sessions/${sessionId}/captures/source`, {
    method: "POST",
    headers: { "Content-Type": "image/png", "X-Telehealth-Token": token },
    body: png,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}
