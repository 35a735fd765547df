// The specialist's pointer and arrows, drawn over the live image on a canvas the size of the
// video element. Coordinates travel as fractions of the image (0..1).

export class Overlay {
  constructor(canvas) {
    this.canvas = canvas;
    this.pointer = null;
    this.arrows = [];
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  apply(message) {
    if (message.type === "pointer") this.pointer = { x: message.x, y: message.y };
    else if (message.type === "arrow") this.arrows = [...this.arrows.slice(-9), message];
    else if (message.type === "clear") {
      this.pointer = null;
      this.arrows = [];
    } else return false;
    this.canvas.dataset.pointer = this.pointer ? `${this.pointer.x},${this.pointer.y}` : "";
    this.canvas.dataset.arrows = String(this.arrows.length);
    this.draw();
    return true;
  }

  draw() {
    const c = this.canvas;
    c.width = c.clientWidth;
    c.height = c.clientHeight;
    const g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    g.strokeStyle = g.fillStyle = "#ffd400";
    g.lineWidth = 3;
    for (const a of this.arrows) arrow(g, a.x0 * c.width, a.y0 * c.height, a.x1 * c.width, a.y1 * c.height);
    if (this.pointer) {
      g.beginPath();
      g.arc(this.pointer.x * c.width, this.pointer.y * c.height, 10, 0, 2 * Math.PI);
      g.stroke();
    }
  }
}

function arrow(g, x0, y0, x1, y1) {
  const angle = Math.atan2(y1 - y0, x1 - x0);
  g.beginPath();
  g.moveTo(x0, y0);
  g.lineTo(x1, y1);
  g.stroke();
  g.beginPath();
  g.moveTo(x1, y1);
  g.lineTo(x1 - 14 * Math.cos(angle - 0.4), y1 - 14 * Math.sin(angle - 0.4));
  g.lineTo(x1 - 14 * Math.cos(angle + 0.4), y1 - 14 * Math.sin(angle + 0.4));
  g.closePath();
  g.fill();
}
