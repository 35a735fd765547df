// Link quality from the peer connection's own statistics, once a second: round-trip time of
// the selected candidate pair, packet loss over the last second (what this side receives, or
// what the hub reports receiving from it) and the video frame rate sent or received. Shown so
// the clinician and the specialist know when the picture is the network's fault.

export function watchLink(currentPc, element, intervalMs = 1000) {
  let previous = null;
  let previousPc = null;
  const timer = setInterval(async () => {
    const pc = currentPc();
    if (!pc || pc.connectionState !== "connected") {
      element.textContent = "link: not connected";
      element.dataset.rtt = element.dataset.loss = element.dataset.fps = "";
      previous = null;
      return;
    }
    if (pc !== previousPc) previous = null; // a reconnect starts the counters again
    previousPc = pc;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return; // closed meanwhile; the next tick says so
    }
    const now = summarise(report);
    show(element, now, previous);
    previous = now;
  }, intervalMs);
  return () => clearInterval(timer);
}

function summarise(report) {
  const s = { rtt: null, lost: 0, received: 0, remoteLoss: null, fps: null };
  report.forEach((stat) => {
    if (stat.type === "candidate-pair" && stat.nominated && stat.state === "succeeded" && stat.currentRoundTripTime !== undefined) {
      s.rtt = stat.currentRoundTripTime;
    } else if (stat.type === "inbound-rtp") {
      s.lost += stat.packetsLost || 0;
      s.received += stat.packetsReceived || 0;
      if (stat.kind === "video" && stat.framesPerSecond !== undefined) s.fps = stat.framesPerSecond;
    } else if (stat.type === "outbound-rtp" && stat.kind === "video" && s.fps === null) {
      s.fps = stat.framesPerSecond ?? null;
    } else if (stat.type === "remote-inbound-rtp" && stat.kind === "video" && stat.fractionLost !== undefined) {
      s.remoteLoss = stat.fractionLost;
    }
  });
  return s;
}

function show(element, now, previous) {
  let loss = now.remoteLoss;
  if (previous) {
    const lost = Math.max(0, now.lost - previous.lost);
    const total = lost + Math.max(0, now.received - previous.received);
    if (total > 0) loss = Math.max(loss ?? 0, lost / total);
  }
  const rtt = now.rtt === null ? null : Math.round(now.rtt * 1000);
  element.dataset.rtt = rtt ?? "";
  element.dataset.loss = loss === null ? "" : (loss * 100).toFixed(1);
  element.dataset.fps = now.fps === null ? "" : String(Math.round(now.fps));
  const parts = [
    `RTT ${rtt ?? "?"} ms`,
    `loss ${element.dataset.loss || "?"}%`,
    `${element.dataset.fps || "?"} fps`,
  ];
  element.textContent = `link: ${parts.join(" · ")}`;
}
