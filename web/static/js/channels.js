// Fluorescence slides: one MONOCHROME2 instance per optical path and level. Each channel is a
// layer with a pseudo-colour; the visible ones are blended additively into each tile.

import { first, HttpError, item, values } from "./dicom.js";

const NATIVE = "1.2.840.10008.1.2.1"; // frames decoded by the server to little-endian samples
// Used in turn when a channel gives no wavelength: blue, green, red, yellow, magenta, cyan, ...
const PALETTE = [
  [0, 0, 255],
  [0, 255, 0],
  [255, 0, 0],
  [255, 255, 0],
  [255, 0, 255],
  [0, 255, 255],
  [255, 128, 0],
  [255, 255, 255],
];
const MAX_FRAMES = 1200; // decoded channel frames kept for re-blending when toggling
// Auto-contrast: the black and white points clip this fraction of a channel's samples at each
// end, over the smallest level (the whole slide in a few frames).
const CLIP_FRACTION = 0.001;

// The optical paths of a level's instances, ordered by identifier.
export function channelsOf(instances) {
  const byId = new Map();
  for (const ds of instances) {
    const path = item(ds, "OpticalPathSequence");
    if (!path) continue;
    const id = String(first(path, "OpticalPathIdentifier") ?? "");
    if (!byId.has(id)) byId.set(id, path);
  }
  const ids = [...byId.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  return ids.map((id, index) => {
    const path = byId.get(id);
    const emission = Number(first(path, "ImagePathFilterPassThroughWavelength")) || null;
    const excitation = Number(first(path, "IlluminationWaveLength")) || null;
    return {
      id,
      name: first(path, "OpticalPathDescription") || `Channel ${index + 1}`,
      emission,
      excitation,
      color: channelColor(path, index),
      visible: true,
      black: null, // sample values shown as black and as full colour; auto-contrast sets them
      white: null,
    };
  });
}

// A channel's display colour: from its emission wavelength (what the eye would see), else its
// excitation wavelength, else the default palette.
export function channelColor(path, index) {
  const nm =
    Number(first(path, "ImagePathFilterPassThroughWavelength")) ||
    Number(first(path, "IlluminationWaveLength")) ||
    Number(values(path, "LightPathFilterPassBand")[1]);
  return nm ? wavelengthColor(nm) : PALETTE[index % PALETTE.length];
}

// Visible-spectrum approximation (piecewise linear, after Bruton); beyond 645 nm (far red and
// near infrared, invisible or nearly) the colour stays red so such channels remain visible.
export function wavelengthColor(nm) {
  let rgb;
  if (nm < 440) rgb = [Math.max(0, (440 - nm) / 60), 0, 1];
  else if (nm < 490) rgb = [0, (nm - 440) / 50, 1];
  else if (nm < 510) rgb = [0, 1, (510 - nm) / 20];
  else if (nm < 580) rgb = [(nm - 510) / 70, 1, 0];
  else if (nm < 645) rgb = [1, (645 - nm) / 65, 0];
  else rgb = [1, 0, 0];
  return rgb.map((v) => Math.round(Math.min(1, v) * 255));
}

// Fetches each visible channel's frame of a tile as decoded samples and blends them.
export class ChannelCompositor {
  constructor(slide, frameUrl) {
    this.slide = slide;
    this.frameUrl = frameUrl; // (level, col, row) -> URL of that tile's frame, per instance
    this.frames = new Map(); // frame URL -> Promise of its samples, oldest first
    this.ready = this.autoContrast();
  }

  // Black and white points of each channel not set yet (by a deep link), from the histogram of
  // the smallest level: the samples inside the image, CLIP_FRACTION clipped at each end.
  async autoContrast() {
    const smallest = this.slide.levels[this.slide.levels.length - 1];
    await Promise.all(
      this.channels.map(async (channel, index) => {
        const inst = smallest.channels[index];
        if (!inst || (channel.black !== null && channel.white !== null)) return;
        const sorted = sortedSamples(await this.levelSamples(inst));
        const n = sorted.length;
        channel.black ??= n ? sorted[Math.floor(CLIP_FRACTION * (n - 1))] : 0;
        channel.white ??= n ? sorted[Math.ceil((1 - CLIP_FRACTION) * (n - 1))] : 2 ** inst.bits - 1;
        if (channel.white <= channel.black) channel.white = channel.black + 1;
      }),
    );
  }

  // Every sample inside the image of one instance (frame padding beyond the edge left out).
  async levelSamples(inst) {
    const tiles = [];
    for (let row = 0; row < inst.tilesDown; row++) {
      for (let col = 0; col < inst.tilesAcross; col++) tiles.push([col, row]);
    }
    const planes = await Promise.all(tiles.map(([col, row]) => this.samples(this.frameUrl(inst, col, row), inst)));
    const out = new (inst.bits > 8 ? Uint16Array : Uint8Array)(inst.width * inst.height);
    let at = 0;
    planes.forEach((plane, k) => {
      const [col, row] = tiles[k];
      const w = Math.min(inst.tileWidth, inst.width - col * inst.tileWidth);
      const h = Math.min(inst.tileHeight, inst.height - row * inst.tileHeight);
      for (let y = 0; y < h; y++) {
        out.set(plane.subarray(y * inst.tileWidth, y * inst.tileWidth + w), at);
        at += w;
      }
    });
    return out;
  }

  get channels() {
    return this.slide.channels;
  }

  // A token of what the tiles show (visible channels, black and white points): their cache key.
  get state() {
    return this.channels.map((c) => `${c.visible ? 1 : 0}:${c.black}:${c.white}`).join(",");
  }

  // Shared by every tile that needs the frame, so not cancelled with any one of them.
  samples(url, lvl) {
    let pending = this.frames.get(url);
    if (!pending) {
      pending = fetchSamples(url, lvl.bits);
      pending.catch(() => this.frames.delete(url)); // fetched again next time
      this.frames.set(url, pending);
      if (this.frames.size > MAX_FRAMES) this.frames.delete(this.frames.keys().next().value);
    }
    return pending;
  }

  // The tile (col, row) of a level as a 2D canvas context: the sum over the visible channels
  // of (sample - black) / (white - black), clipped to 0..1, times the channel's colour.
  async tile(lvl, col, row) {
    await this.ready;
    const width = lvl.tileWidth;
    const height = lvl.tileHeight;
    const sum = new Float32Array(width * height * 3);
    const visible = this.channels.map((c, i) => [c, lvl.channels[i]]).filter(([c, inst]) => c.visible && inst);
    const planes = await Promise.all(visible.map(([, inst]) => this.samples(this.frameUrl(inst, col, row), inst)));
    planes.forEach((plane, k) => {
      const [channel] = visible[k];
      const { black, white } = channel;
      const [r, g, b] = channel.color;
      const scale = 1 / (white - black);
      for (let i = 0, n = Math.min(plane.length, width * height); i < n; i++) {
        const v = Math.min(1, Math.max(0, (plane[i] - black) * scale));
        sum[3 * i] += v * r;
        sum[3 * i + 1] += v * g;
        sum[3 * i + 2] += v * b;
      }
    });
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d");
    const image = context.createImageData(width, height);
    for (let i = 0, n = width * height; i < n; i++) {
      image.data[4 * i] = sum[3 * i];
      image.data[4 * i + 1] = sum[3 * i + 1];
      image.data[4 * i + 2] = sum[3 * i + 2];
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0); // Uint8ClampedArray: the additive sum is clipped at 255
    return context;
  }
}

function sortedSamples(samples) {
  return samples.slice().sort(); // typed arrays sort numerically
}

async function fetchSamples(url, bits) {
  const response = await fetch(url, { headers: { Accept: `application/octet-stream; transfer-syntax=${NATIVE}` } });
  if (!response.ok) throw new HttpError(response, await response.text());
  const body = await response.arrayBuffer();
  // Native frames are little endian, as are the machines browsers run on.
  return bits > 8 ? new Uint16Array(body, 0, body.byteLength >> 1) : new Uint8Array(body);
}
