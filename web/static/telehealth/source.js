// Stills recorded at the clinic from the device's own video, at its native size and before the
// browser encodes it for the network, sent losslessly (PNG); the hub stores an Ultrasound Image
// through the archive's ingest path. Each still waits in an outbox in IndexedDB until the hub
// has it: a dropped link or a reload of the page retries it, under the same capture id, so the
// hub stores it once.

const DB = "tessera-telehealth";
const STORE = "outbox";
const RETRY_MS = 2000;

export class SourceStills {
  constructor({ sessionId, token, onStored, onPending, onError }) {
    Object.assign(this, { sessionId, token, onStored, onPending, onError });
    this.sending = false;
  }

  async record(video) {
    if (!video.videoWidth) throw new Error("the device video has not started");
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const item = { id: crypto.randomUUID(), session: this.sessionId, png, taken: Date.now() };
    await transact("readwrite", (store) => store.put(item));
    await this.flush();
  }

  // Send what waits for this session, oldest first; on a network failure, try again later.
  async flush() {
    if (this.sending) return;
    this.sending = true;
    try {
      for (;;) {
        const waiting = await this.pending();
        this.onPending(waiting.length);
        if (!waiting.length) return;
        const item = waiting[0];
        let response;
        try {
          response = await this.upload(item);
        } catch (error) {
          this.onError(new Error(`still not uploaded yet (${error.message}); retrying`));
          setTimeout(() => this.flush(), RETRY_MS);
          return;
        }
        const data = await response.json().catch(() => ({}));
        if (response.status >= 500) {
          this.onError(new Error(`still not stored yet (${data.detail || response.status}); retrying`));
          setTimeout(() => this.flush(), RETRY_MS);
          return;
        }
        await transact("readwrite", (store) => store.delete(item.id));
        if (response.ok) this.onStored(data);
        else this.onError(new Error(`still refused: ${data.detail || response.status}`));
      }
    } finally {
      this.sending = false;
    }
  }

  async pending() {
    const all = await transact("readonly", (store) => store.getAll());
    return all.filter((item) => item.session === this.sessionId).sort((a, b) => a.taken - b.taken);
  }

  upload(item) {
    const url = `/api/telehealth/sessions/${this.sessionId}/captures/source?capture=${item.id}`;
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "image/png", "X-Telehealth-Token": this.token },
      body: item.png,
    });
  }
}

function transact(mode, action) {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open(DB, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(STORE, { keyPath: "id" });
    opening.onerror = () => reject(opening.error);
    opening.onsuccess = () => {
      const db = opening.result;
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => {
        db.close();
        resolve(request.result);
      };
      tx.onerror = () => {
        db.close();
        reject(tx.error);
      };
    };
  });
}
