// Transcript files built from the `done` event's segments, so the download is exactly the
// transcript on screen (a second request could transcribe the audio differently).

function stamp(seconds, separator) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  return `${pad(h)}:${pad(m)}:${pad(s)}${separator}${pad(ms % 1000, 3)}`;
}

function cues(segments, separator) {
  return segments
    .filter((s) => s.text.trim())
    .map((s) => `${stamp(s.start, separator)} --> ${stamp(s.end, separator)}\n${s.text.trim()}\n`);
}

export function captions(format, text, segments) {
  if (format === "srt") return cues(segments, ",").map((cue, i) => `${i + 1}\n${cue}`).join("\n");
  if (format === "vtt") return `WEBVTT\n\n${cues(segments, ".").join("\n")}`;
  return `${text.trim()}\n`;
}

export const MEDIA_TYPES = { txt: "text/plain", srt: "application/x-subrip", vtt: "text/vtt" };
