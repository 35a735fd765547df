// Signalling and the peer connection to the hub, shared by the clinic and specialist pages.
// One complete offer per connection (ICE gathered first, no trickle); on a drop the page
// reconnects with a fresh peer connection and the hub keeps the session. Each connection asks
// the hub for its STUN/TURN servers first: TURN credentials are minted per session and expire.

const RECOVERY_WAIT_MS = 15000;

export async function api(path, { method = "GET", body, token } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Telehealth-Token"] = token;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

export class HubLink {
  // role: "clinic" | "specialist"; setup(pc) adds tracks/transceivers before the offer.
  constructor({ sessionId, token, setup, onTrack, onMessage, onEvent, onStatus }) {
    Object.assign(this, { sessionId, token, setup, onTrack, onMessage, onEvent, onStatus });
    this.closed = false;
    this.channel = null;
    this.pc = null;
  }

  async connect() {
    if (this.closed) return;
    this.onStatus("connecting");
    try {
      await this._open();
    } catch (error) {
      this.onStatus(`connection failed: ${error.message}; retrying`);
      this._retry();
    }
  }

  send(message) {
    if (this.channel && this.channel.readyState === "open") {
      this.channel.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  close() {
    this.closed = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "bye" }));
    if (this.pc) this.pc.close();
    if (this.ws) this.ws.close();
  }

  async _open() {
    if (this.pc) this.pc.close();
    if (this.ws) this.ws.close();
    const ice = await api(`/api/telehealth/sessions/${this.sessionId}/ice`, { token: this.token });
    const pc = new RTCPeerConnection(ice);
    this.pc = pc;
    const relayErrors = [];
    pc.onicecandidateerror = (e) => relayErrors.push(`${e.errorCode} ${e.errorText}`.trim());
    this.setup(pc);
    const channel = pc.createDataChannel("guidance");
    this.channel = channel;
    channel.onmessage = (e) => this.onMessage(JSON.parse(e.data));
    channel.onopen = () => this.onStatus("connected");
    pc.ontrack = (e) => this.onTrack(e);
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "failed") {
        this.onStatus("connection failed; reconnecting");
        this._retry();
      } else if (pc.connectionState === "disconnected") {
        this._awaitRecovery(pc);
      }
    };

    const ws = await this._socket();
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (ice.iceTransportPolicy === "relay" && !hasRelayCandidate(pc.localDescription.sdp)) {
      const reason = relayErrors.length ? ` (${[...new Set(relayErrors)].join(", ")})` : "";
      throw new Error(`could not reach the relay server${reason}`);
    }
    const answer = new Promise((resolve, reject) => {
      this._answer = { resolve, reject };
    });
    ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
    await pc.setRemoteDescription({ type: "answer", sdp: await answer });
  }

  _socket() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/api/telehealth/sessions/${this.sessionId}/signal?token=${encodeURIComponent(this.token)}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onmessage = (e) => {
      const message = JSON.parse(e.data);
      if (message.type === "answer" && this._answer) this._answer.resolve(message.sdp);
      else if (message.type === "error" && this._answer) this._answer.reject(new Error(message.message));
      else this.onEvent(message);
    };
    ws.onclose = () => {
      if (ws === this.ws && !this.closed) this.onStatus("signalling closed");
    };
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("cannot reach the hub"));
    });
  }

  // A missed consent check on a busy or lossy link reads as "disconnected" and usually heals by
  // itself; renegotiating at once would drop a session that was about to recover.
  _awaitRecovery(pc) {
    this.onStatus("connection interrupted; waiting for it to recover");
    setTimeout(() => {
      if (pc !== this.pc || this.closed || pc.connectionState === "connected") return;
      this.onStatus(`connection ${pc.connectionState}; reconnecting`);
      this._retry();
    }, RECOVERY_WAIT_MS);
  }

  _retry() {
    if (this.closed || this._retrying) return;
    this._retrying = true;
    setTimeout(() => {
      this._retrying = false;
      this.connect();
    }, 2000);
  }
}

function hasRelayCandidate(sdp) {
  return sdp.split("\r\n").some((line) => line.startsWith("a=candidate") && line.includes(" typ relay"));
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 5000); // send what we have rather than wait forever
  });
}

// Capture buttons: one still button and one start/stop clip button, sending data-channel
// commands; the clip button follows the hub's "recording" / stored events.
export function captureControls(link, root, log) {
  const still = root.querySelector("[data-capture=still]");
  const clip = root.querySelector("[data-capture=clip]");
  const codec = () => root.querySelector("[name=codec]")?.value || "jpeg";
  still.onclick = () => link.send({ type: "capture", action: "still", codec: codec() }) || log("not connected");
  clip.onclick = () => {
    const action = clip.dataset.state === "recording" ? "stop" : "start";
    link.send({ type: "capture", action, codec: codec() }) || log("not connected");
  };
  return (event) => {
    if (event.type !== "capture") return;
    if (event.state === "recording") {
      clip.dataset.state = "recording";
      clip.textContent = "Stop clip";
      clip.classList.add("active");
    } else if (event.kind === "clip" || event.state === "failed") {
      clip.dataset.state = "";
      clip.textContent = "Start clip";
      clip.classList.remove("active");
    }
    if (event.state === "stored") {
      if (root.querySelector(`[data-captures] li[data-sop="${event.sop_instance_uid}"]`)) return;
      const item = document.createElement("li");
      item.dataset.sop = event.sop_instance_uid;
      item.dataset.kind = event.kind;
      item.dataset.source = event.source || "stream";
      const what = event.kind === "clip" ? `Clip, ${event.frames} frames` : "Still";
      item.textContent = `${what}${event.source === "device" ? " from the device, lossless," : ""} stored` +
        (event.dropped ? ` (${event.dropped} frames dropped)` : "");
      root.querySelector("[data-captures]").append(item);
    } else if (event.state === "failed") {
      log(`capture failed: ${event.message}`);
    }
  };
}

// The session log and the error banner both pages show.
export function log(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  document.querySelector("#log").prepend(item);
}

export function showError(error) {
  const banner = document.querySelector("#error");
  banner.hidden = false;
  banner.textContent = error instanceof Error ? error.message : String(error);
}
