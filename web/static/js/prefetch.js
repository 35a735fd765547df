// Prefetch the frames around the current view, at the level being drawn, so that panning to an
// adjacent field of view only decodes: the frames are already here. Bounded in count and memory,
// and cancelled as soon as the view moves on.

import { fetchFrameBlob } from "./dicom.js";

const CONCURRENCY = 4;
const MAX_BLOBS = 400;

export class Prefetcher {
  constructor(source) {
    this.source = source;
    this.blobs = new Map(); // frame URL -> Blob, oldest first
    this.queue = [];
    this.running = 0;
    this.controller = new AbortController();
    this.fetched = 0;
  }

  // The Blob of a prefetched frame, handed over once (OpenSeadragon caches the decoded tile).
  take(url) {
    const blob = this.blobs.get(url);
    if (blob) this.blobs.delete(url);
    return blob;
  }

  cancel() {
    this.controller.abort();
    this.controller = new AbortController();
    this.queue = [];
  }

  // The view settled on `bounds` (image pixels at full resolution) drawn at `imageZoom`.
  around(bounds, imageZoom) {
    this.cancel();
    const source = this.source;
    if (source.compositor) return; // blended fluorescence tiles are fetched as they are drawn
    const level = drawingLevel(source, imageZoom);
    const l = source.ascending[level];
    const scale = source.getLevelScale(level);
    const tile = (v, size) => Math.floor((v * scale) / size);
    const cols = [tile(bounds.x - bounds.width, l.tileWidth), tile(bounds.x + 2 * bounds.width, l.tileWidth)];
    const rows = [tile(bounds.y - bounds.height, l.tileHeight), tile(bounds.y + 2 * bounds.height, l.tileHeight)];
    const inView = (c, r) =>
      c >= tile(bounds.x, l.tileWidth) &&
      c <= tile(bounds.x + bounds.width, l.tileWidth) &&
      r >= tile(bounds.y, l.tileHeight) &&
      r <= tile(bounds.y + bounds.height, l.tileHeight);
    const wanted = [];
    for (let r = Math.max(0, rows[0]); r <= Math.min(l.tilesDown - 1, rows[1]); r++) {
      for (let c = Math.max(0, cols[0]); c <= Math.min(l.tilesAcross - 1, cols[1]); c++) {
        if (inView(c, r) || !source.tileExists(level, c, r)) continue;
        const url = source.getTileUrl(level, c, r);
        if (!this.blobs.has(url)) wanted.push(url);
      }
    }
    this.queue = wanted;
    this.transferSyntax = l.transferSyntax;
    for (let i = this.running; i < CONCURRENCY; i++) this.next();
  }

  next() {
    const url = this.queue.shift();
    if (!url) return;
    this.running += 1;
    const signal = this.controller.signal;
    fetchFrameBlob(url, this.transferSyntax, signal)
      .then((blob) => {
        this.blobs.set(url, blob);
        this.fetched += 1;
        if (this.blobs.size > MAX_BLOBS) this.blobs.delete(this.blobs.keys().next().value);
      })
      .catch(() => {}) // a failed prefetch is fetched again when the tile is needed
      .finally(() => {
        this.running -= 1;
        if (!signal.aborted) this.next();
      });
  }
}

// The OpenSeadragon level drawn at this zoom: the coarsest one with at least screen resolution.
function drawingLevel(source, imageZoom) {
  for (let level = source.minLevel; level <= source.maxLevel; level++) {
    if (source.getLevelScale(level) >= imageZoom * 0.999) return level;
  }
  return source.maxLevel;
}
