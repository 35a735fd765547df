// Annotations on the slide: points, measured lines, rectangles and freehand outlines (with their
// area), each with a label,
// drawn over OpenSeadragon in full-resolution pixel coordinates and saved through
// /api/annotations as a DICOM annotation instance. Other people's saved sets show read-only.

const OSD = window.OpenSeadragon;
const SVG = "http://www.w3.org/2000/svg";
const TOOLS = ["point", "line", "rectangle", "polygon"];
const KIND_NAMES = { point: "Point", line: "Measurement", rectangle: "Region", polygon: "Outline" };
const OUTLINE_STEP_PX = 4; // screen pixels between the points of a freehand outline

export class Annotations {
  constructor(viewer, studyUid) {
    this.viewer = viewer;
    this.studyUid = studyUid;
    this.slide = null;
    this.mine = []; // the shapes of the current slide that this user edits
    this.others = []; // [{creator, annotations}] read-only
    this.drafts = new Map(); // slide image SOP UID -> unsaved shapes, kept across slide changes
    this.dirty = false;
    this.tool = null;
    this.drawing = null;
    this.canWrite = false;
    this.svg = this.overlay();
    this.bindControls();
    viewer.addHandler("update-viewport", () => this.render());
    viewer.addHandler("animation", () => this.render());
    window.addEventListener("beforeunload", (e) => {
      if (this.dirty) e.preventDefault();
    });
  }

  async init() {
    const me = await fetch("/api/me").then((r) => (r.ok ? r.json() : { scopes: [] }));
    this.canWrite = me.scopes.includes("annotations.write");
    document.getElementById("annotate").hidden = !this.canWrite;
  }

  // The slide changed: keep this one's unsaved shapes, then load the next one's sets.
  async show(slide) {
    if (this.slide && this.dirty) this.drafts.set(this.image, this.mine);
    this.slide = slide;
    this.setTool(null);
    const response = await fetch(`/api/annotations/${this.studyUid}?image=${this.image}`);
    const body = response.ok ? await response.json() : { sets: [] };
    const own = body.sets.find((s) => s.mine);
    this.others = body.sets.filter((s) => !s.mine);
    const draft = this.drafts.get(this.image);
    this.mine = draft ?? (own ? own.annotations : []);
    this.setDirty(Boolean(draft));
    this.status(own ? `Saved ${new Date(own.saved_at).toLocaleString()}` : "");
    this.render();
  }

  get image() {
    return this.slide.levels[0].sop;
  }

  async save() {
    const button = document.getElementById("ann-save");
    button.disabled = true;
    this.status("Saving…");
    const response = await fetch(`/api/annotations/${this.studyUid}?image=${this.image}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ annotations: this.mine }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      this.status(`Not saved: ${body.detail || `HTTP ${response.status}`}`, true);
      button.disabled = false;
      return;
    }
    this.drafts.delete(this.image);
    this.setDirty(false);
    this.status(`Saved ${new Date().toLocaleString()}`);
  }

  // -- drawing --------------------------------------------------------------------------------

  overlay() {
    const svg = document.createElementNS(SVG, "svg");
    svg.classList.add("annotation-layer");
    this.viewer.element.append(svg);
    svg.addEventListener("pointerdown", (e) => this.start(e));
    svg.addEventListener("pointermove", (e) => this.move(e));
    svg.addEventListener("pointerup", (e) => this.finish(e));
    return svg;
  }

  setTool(tool) {
    this.tool = tool;
    this.drawing = null;
    this.svg.classList.toggle("drawing", Boolean(tool));
    this.viewer.setMouseNavEnabled(!tool);
    for (const name of TOOLS) {
      document.getElementById(`tool-${name}`).setAttribute("aria-pressed", String(name === tool));
    }
  }

  imagePoint(event) {
    const box = this.viewer.element.getBoundingClientRect();
    const p = this.viewer.viewport.viewerElementToImageCoordinates(
      new OSD.Point(event.clientX - box.left, event.clientY - box.top),
    );
    const clamp = (v, max) => Math.round(Math.min(Math.max(v, 0), max) * 100) / 100;
    return [clamp(p.x, this.slide.width), clamp(p.y, this.slide.height)];
  }

  start(event) {
    if (!this.tool) return;
    event.preventDefault();
    this.svg.setPointerCapture(event.pointerId);
    const at = this.imagePoint(event);
    const points = this.tool === "point" || this.tool === "polygon" ? [at] : [at, at];
    this.drawing = { kind: this.tool, label: this.label(), points };
    this.lastScreen = [event.clientX, event.clientY];
    this.render();
  }

  move(event) {
    const shape = this.drawing;
    if (!shape || shape.kind === "point") return;
    if (shape.kind === "polygon") {
      const [x, y] = this.lastScreen;
      if (Math.hypot(event.clientX - x, event.clientY - y) < OUTLINE_STEP_PX) return;
      this.lastScreen = [event.clientX, event.clientY];
      shape.points.push(this.imagePoint(event));
    } else {
      shape.points[1] = this.imagePoint(event);
    }
    this.render();
  }

  finish(event) {
    if (!this.drawing) return;
    const shape = this.drawing;
    this.drawing = null;
    if (shape.kind === "line" || shape.kind === "rectangle") shape.points[1] = this.imagePoint(event);
    if (this.complete(shape)) {
      this.mine.push(shape);
      this.setDirty(true);
    }
    this.render();
  }

  complete(shape) {
    if (shape.kind === "point") return true;
    if (shape.kind === "polygon") return shape.points.length >= 3 && this.area(shape) > 0;
    const [[x0, y0], [x1, y1]] = shape.points;
    return shape.kind === "line" ? x0 !== x1 || y0 !== y1 : x0 !== x1 && y0 !== y1;
  }

  remove(index) {
    this.mine.splice(index, 1);
    this.setDirty(true);
    this.render();
  }

  label() {
    return document.getElementById("ann-label").value.trim() || KIND_NAMES[this.tool];
  }

  // -- display --------------------------------------------------------------------------------

  render() {
    if (!this.slide) return;
    this.svg.replaceChildren();
    this.others.forEach((set) => set.annotations.forEach((s) => this.draw(s, "theirs")));
    this.mine.forEach((s) => this.draw(s, "mine"));
    if (this.drawing) this.draw(this.drawing, "mine drafting");
    this.renderList();
  }

  draw(shape, className) {
    const pts = shape.points.map(([x, y]) => this.viewer.viewport.imageToViewerElementCoordinates(new OSD.Point(x, y)));
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", `shape ${shape.kind} ${className}`);
    if (shape.kind === "point") {
      g.append(svgElement("circle", { cx: pts[0].x, cy: pts[0].y, r: 6 }));
    } else if (shape.kind === "line") {
      g.append(svgElement("line", { x1: pts[0].x, y1: pts[0].y, x2: pts[1].x, y2: pts[1].y }));
    } else if (shape.kind === "polygon") {
      g.append(svgElement("polygon", { points: pts.map((p) => `${p.x},${p.y}`).join(" ") }));
    } else {
      const [x, y] = [Math.min(pts[0].x, pts[1].x), Math.min(pts[0].y, pts[1].y)];
      g.append(svgElement("rect", { x, y, width: Math.abs(pts[1].x - pts[0].x), height: Math.abs(pts[1].y - pts[0].y) }));
    }
    const text = svgElement("text", { x: pts.at(-1).x + 8, y: pts.at(-1).y - 8 });
    text.textContent = this.caption(shape);
    g.append(text);
    this.svg.append(g);
  }

  caption(shape) {
    const size = this.size(shape);
    return size ? `${shape.label} · ${size}` : shape.label;
  }

  // Length of a line, area of a region, on the slide; "" without a pixel spacing.
  size(shape) {
    const um = this.slide.micronsPerPixel;
    if (!um || shape.kind === "point") return "";
    if (shape.kind === "line") {
      const [[x0, y0], [x1, y1]] = shape.points;
      const microns = Math.hypot(x1 - x0, y1 - y0) * um;
      return microns >= 1000 ? `${(microns / 1000).toFixed(2)} mm` : `${microns.toFixed(1)} µm`;
    }
    const mm2 = (this.area(shape) * um * um) / 1e6;
    return `${mm2.toPrecision(3)} mm²`;
  }

  // In full-resolution pixels: the rectangle's sides, or the outline's shoelace area.
  area(shape) {
    if (shape.kind === "rectangle") {
      const [[x0, y0], [x1, y1]] = shape.points;
      return Math.abs((x1 - x0) * (y1 - y0));
    }
    let twice = 0;
    shape.points.forEach(([x0, y0], i) => {
      const [x1, y1] = shape.points[(i + 1) % shape.points.length];
      twice += x0 * y1 - x1 * y0;
    });
    return Math.abs(twice) / 2;
  }

  renderList() {
    const list = document.getElementById("ann-list");
    const items = this.mine.map((shape, i) => {
      const li = document.createElement("li");
      li.dataset.kind = shape.kind;
      li.append(`${KIND_NAMES[shape.kind]}: ${this.caption(shape)} `);
      if (this.canWrite) {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.title = "Remove";
        remove.textContent = "×";
        remove.addEventListener("click", () => this.remove(i));
        li.append(remove);
      }
      return li;
    });
    for (const set of this.others) {
      const li = document.createElement("li");
      li.className = "theirs";
      li.textContent = `${set.creator}: ${set.annotations.length} annotation(s)`;
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  // -- controls -------------------------------------------------------------------------------

  bindControls() {
    for (const name of TOOLS) {
      document.getElementById(`tool-${name}`).addEventListener("click", () => this.setTool(this.tool === name ? null : name));
    }
    document.getElementById("ann-save").addEventListener("click", () => this.save());
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.tool) this.setTool(null);
    });
  }

  setDirty(dirty) {
    this.dirty = dirty;
    document.getElementById("ann-save").disabled = !dirty;
    if (dirty) this.status("Unsaved changes");
  }

  status(text, error = false) {
    const box = document.getElementById("ann-status");
    box.textContent = text;
    box.classList.toggle("error-text", error);
  }
}

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}
