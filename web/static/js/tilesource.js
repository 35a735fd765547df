// OpenSeadragon tile source over DICOMweb WADO-RS frames of a DICOM WSI pyramid.
// OSD levels run from the smallest DICOM level (0) up to the full-resolution one (max).

import { ChannelCompositor } from "./channels.js";
import { fetchFrameBlob, instanceUrl } from "./dicom.js";
import { Prefetcher } from "./prefetch.js";
import { frameNumber } from "./pyramid.js";

const OSD = window.OpenSeadragon;

export class DicomTileSource extends OSD.TileSource {
  constructor(slide) {
    const ascending = [...slide.levels].reverse();
    super({
      width: slide.width,
      height: slide.height,
      tileWidth: slide.levels[0].tileWidth,
      tileHeight: slide.levels[0].tileHeight,
      tileOverlap: 0,
      minLevel: 0,
      maxLevel: ascending.length - 1,
    });
    this.slide = slide;
    this.ascending = ascending;
    this.frameFetches = 0;
    this.prefetcher = new Prefetcher(this);
    // Fluorescence: tiles are blended in the page from each channel's frame.
    this.compositor = slide.channels?.length
      ? new ChannelCompositor(slide, (inst, col, row) => this.frameUrlOf(inst, col, row))
      : null;
  }

  frameUrlOf(l, col, row) {
    return `${instanceUrl(this.slide.study, l.series, l.sop)}/frames/${frameNumber(l, col, row)}`;
  }

  supports() {
    return false; // only built explicitly, never picked by OSD from a URL
  }

  getLevelScale(level) {
    const l = this.ascending[level];
    return l ? l.width / this.slide.width : NaN;
  }

  getNumTiles(level) {
    const l = this.ascending[level];
    return l ? new OSD.Point(l.tilesAcross, l.tilesDown) : new OSD.Point(0, 0);
  }

  getTileWidth(level) {
    return this.ascending[level]?.tileWidth ?? this._tileWidth;
  }

  getTileHeight(level) {
    return this.ascending[level]?.tileHeight ?? this._tileHeight;
  }

  tileExists(level, x, y) {
    const l = this.ascending[level];
    if (!l || x < 0 || y < 0 || x >= l.tilesAcross || y >= l.tilesDown) return false;
    return frameNumber(l, x, y) !== undefined;
  }

  getTileUrl(level, x, y) {
    const url = this.frameUrlOf(this.ascending[level], x, y);
    // A blended tile is cached under the visible channels it shows.
    return this.compositor ? `${url}#channels=${this.compositor.state}` : url;
  }

  // Frames are fetched with fetch() so the Accept header can be set; the browser's HTTP cache
  // (ETag + immutable Cache-Control from the server) is used as is.
  downloadTileStart(job) {
    if (this.compositor) {
      const { level, x, y } = job.tile;
      this.frameFetches += 1;
      this.compositor
        .tile(this.ascending[level], x, y)
        .then((context) => job.finish(context, null, "context2d"))
        .catch((error) => job.fail(`tile ${job.src}: ${error.message}`, null));
      return;
    }
    const prefetched = this.prefetcher.take(job.src);
    if (prefetched) {
      job.finish(prefetched, null, "rasterBlob");
      return;
    }
    const controller = new AbortController();
    job.userData.controller = controller;
    const l = this.ascending[job.tile.level];
    this.frameFetches += 1;
    fetchFrameBlob(job.src, l.transferSyntax, controller.signal)
      .then((blob) => job.finish(blob, null, "rasterBlob"))
      .catch((error) => {
        if (error.name !== "AbortError") job.fail(`frame ${job.src}: ${error.message}`, null);
      });
  }

  downloadTileAbort(job) {
    job.userData.controller?.abort();
  }
}
