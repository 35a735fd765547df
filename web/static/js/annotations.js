// Annotations on the slide: points, measured lines and rectangular regions, each with a label,
// drawn over OpenSeadragon in full-resolution pixel coordinates and saved through
// /api/annotations as a DICOM annotation instance. Other people's saved sets show read-only.

const OSD = window.OpenSeadragon;
const SVG = "http://www.w3.org/2000/svg";
const TOOLS = ["point", "line", "rectangle"];
const KIND_NAMES = { point: "Point", line: "Measurement", rectangle: "Region" };

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
      this.status(`Not saved: ${body.error || `HTTP ${response.status}`}`, true);
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
    this.drawing = { kind: this.tool, label: this.label(), points: this.tool === "point" ? [at] : [at, at] };
    this.render();
  }

  move(event) {
    if (!this.drawing || this.drawing.kind === "point") return;
    this.drawing.points[1] = this.imagePoint(event);
    this.render();
  }

  finish(event) {
    if (!this.drawing) return;
    const shape = this.drawing;
    this.drawing = null;
    if (shape.kind !== "point") shape.points[1] = this.imagePoint(event);
    const [a, b] = [shape.points[0], shape.points[shape.points.length - 1]];
    if (shape.kind === "point" || Math.hypot(a[0] - b[0], a[1] - b[1]) > 0) {
      this.mine.push(shape);
      this.setDirty(true);
    }
    this.render();
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
    const length = this.length(shape);
    return length ? `${shape.label} · ${length}` : shape.label;
  }

  length(shape) {
    const um = this.slide.micronsPerPixel;
    if (shape.kind !== "line" || !um) return "";
    const [[x0, y0], [x1, y1]] = shape.points;
    const microns = Math.hypot(x1 - x0, y1 - y0) * um;
    return microns >= 1000 ? `${(microns / 1000).toFixed(2)} mm` : `${microns.toFixed(1)} µm`;
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
