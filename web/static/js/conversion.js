// A slide that is still being converted: its instances arrive one by one, smallest first. The
// viewer follows the job that makes them (when the signed-in user may see it) and refreshes.

import { getJson } from "./dicom.js";

const POLL_MS = 500;

// The newest conversion job that stores into this study, or null (none, or not ours to see).
export async function conversionOf(studyUid) {
  try {
    const me = await getJson("/api/me").catch(() => null);
    if (me && !me.scopes.includes("jobs.read")) return null; // asked, it would be refused
    const { jobs } = await getJson("/api/jobs");
    return jobs.find((job) => job.study_uid === studyUid) || null;
  } catch {
    return null; // no job API for this user: the study is shown as it is
  }
}

// The job's state a moment later.
export async function nextState(job) {
  await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  return getJson(`/api/jobs/${encodeURIComponent(job.id)}`);
}

// Calls onChange(job) whenever the job's stored instances or status change, until it finishes.
export async function follow(job, onChange) {
  let last = job;
  while (!last.finished) {
    const now = await nextState(last);
    if (now.instances !== last.instances || now.status !== last.status) await onChange(now);
    last = now;
  }
  return last;
}

export function describe(job) {
  if (job.status === "failed") return `This slide is incomplete: ${job.error}`;
  if (job.finished) return "";
  const images = job.instances === 1 ? "1 image" : `${job.instances} images`;
  return `Converting (${Math.round(job.percent)}%): ${images} of this slide so far; finer levels follow.`;
}
