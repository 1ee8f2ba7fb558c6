// Listen panel: a file or a microphone recording, decoded here to 16 kHz mono pcm16, streamed
// over the transcription WebSocket; the transcript streams in and its words light up as the
// audio plays back.

import { openSocket, saveBlob, showError, socketFailure } from "./api.js";
import { captions, MEDIA_TYPES } from "./captions.js";

const $ = (id) => document.getElementById(id);
const RATE = 16000;
const FRAME = RATE; // one second of samples per binary frame

let result = null; // the last `done` event
let recorder = null;

function status(text, state) {
  const el = $("listen-status");
  el.textContent = text;
  if (state) el.dataset.state = state;
}

function fillModels(models) {
  const select = $("stt-model");
  const current = select.value;
  select.replaceChildren(
    ...models.filter((m) => m.type === "stt").map((m) => new Option(m.name, m.name)),
  );
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

// Any format the browser decodes, mixed down to mono and resampled to 16 kHz by Web Audio.
async function toPcm16(blob) {
  const bytes = await blob.arrayBuffer();
  let decoded;
  try {
    decoded = await new OfflineAudioContext(1, 1, 44100).decodeAudioData(bytes);
  } catch (exc) {
    throw new Error(`the browser cannot decode this audio (${exc.message})`);
  }
  const length = Math.max(1, Math.ceil(decoded.duration * RATE));
  const offline = new OfflineAudioContext(1, length, RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const mono = (await offline.startRendering()).getChannelData(0);
  const pcm = new Int16Array(mono.length);
  for (let i = 0; i < mono.length; i += 1) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    pcm[i] = s < 0 ? s * 32768 : s * 32767;
  }
  return pcm;
}

let words = []; // the transcript's spans with their times, in order
let lit = null;

function showWords(done) {
  const box = $("transcript");
  box.replaceChildren();
  words = [];
  lit = null;
  for (const segment of done.segments) {
    const parts = segment.words?.length ? segment.words : [{ ...segment, word: segment.text }];
    for (const w of parts) {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = w.word;
      span.dataset.start = String(w.start);
      span.dataset.end = String(w.end);
      box.append(span);
      words.push({ span, start: w.start, end: w.end });
    }
  }
}

// The word under the playback position is marked (class "current", aria-current); a binary
// search keeps each frame's work small however long the transcript is.
function highlight() {
  const t = $("playback").currentTime;
  let lo = 0;
  let hi = words.length - 1;
  let found = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (t < words[mid].start) hi = mid - 1;
    else if (t >= words[mid].end) lo = mid + 1;
    else {
      found = words[mid].span;
      break;
    }
  }
  if (found === lit) return;
  lit?.classList.remove("current");
  lit?.removeAttribute("aria-current");
  found?.classList.add("current");
  found?.setAttribute("aria-current", "true");
  lit = found;
}

function follow() {
  highlight();
  if (!$("playback").paused) requestAnimationFrame(follow);
}

async function transcribe(blob, label) {
  showError("");
  result = null;
  for (const b of document.querySelectorAll(".caption")) b.disabled = true;
  showWords({ segments: [] });
  const player = $("playback");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
  status(`decoding ${label}`, "decoding");
  let pcm;
  try {
    pcm = await toPcm16(blob);
  } catch (exc) {
    status(`failed: ${exc.message}`, "error");
    showError(`listen: ${exc.message}`);
    return;
  }
  const seconds = (pcm.length / RATE).toFixed(1);
  const socket = openSocket("/v1/audio/transcriptions/stream");
  let opened = false;
  let ended = false;
  socket.addEventListener("open", async () => {
    opened = true;
    const config = { type: "config", input_format: "pcm16", sample_rate: RATE, word_timestamps: true };
    config.model = $("stt-model").value || undefined;
    if ($("language").value.trim()) config.language = $("language").value.trim();
    socket.send(JSON.stringify(config));
    status(`sending ${seconds} s of audio`, "streaming");
    for (let i = 0; i < pcm.length && socket.readyState === WebSocket.OPEN; i += FRAME) {
      socket.send(pcm.subarray(i, i + FRAME));
      // The server reads only as fast as it transcribes; do not pile the file up in memory.
      while (socket.bufferedAmount > 1 << 20 && socket.readyState === WebSocket.OPEN) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "end" }));
  });
  socket.addEventListener("message", ({ data }) => {
    const message = JSON.parse(data);
    if (message.type === "progress") {
      status(`transcribed ${(message.processed_ms / 1000).toFixed(1)} of ${seconds} s`);
    } else if (message.type === "partial") {
      $("transcript").textContent = message.text;
    } else if (message.type === "done") {
      ended = true;
      result = message;
      showWords(message);
      for (const b of document.querySelectorAll(".caption")) b.disabled = false;
      status(`done: ${seconds} s transcribed in ${message.processing_ms} ms (${message.language || "?"})`, "done");
      document.dispatchEvent(new Event("vox:used"));
    } else if (message.type === "error") {
      ended = true;
      status(`failed: ${message.message}`, "error");
      showError(`listen: ${message.message}`);
    }
  });
  socket.addEventListener("close", async (closed) => {
    if (ended) return;
    const why = await socketFailure(closed, opened);
    status(`failed: ${why}`, "error");
    showError(`listen: ${why}`);
  });
}

async function record() {
  const button = $("record");
  if (recorder) {
    recorder.stop();
    return;
  }
  showError("");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (exc) {
    showError(`microphone: ${exc.message}`);
    return;
  }
  const chunks = [];
  const started = performance.now();
  recorder = new MediaRecorder(stream);
  const clock = setInterval(() => {
    const ms = Math.round(performance.now() - started);
    $("rec-time").dataset.ms = String(ms);
    $("rec-time").textContent = `${(ms / 1000).toFixed(1)} s`;
  }, 100);
  recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
  recorder.addEventListener("stop", () => {
    clearInterval(clock);
    for (const track of stream.getTracks()) track.stop();
    button.textContent = "Record";
    button.setAttribute("aria-pressed", "false");
    const blob = new Blob(chunks, { type: recorder.mimeType });
    recorder = null;
    transcribe(blob, "the recording");
  });
  recorder.start();
  button.textContent = "Stop recording";
  button.setAttribute("aria-pressed", "true");
  status("recording", "recording");
}

function download(format) {
  if (!result) return;
  const body = captions(format, result.text, result.segments);
  saveBlob(new Blob([body], { type: MEDIA_TYPES[format] }), `transcript.${format}`);
}

export function setup() {
  document.addEventListener("vox:models", (e) => fillModels(e.detail));
  $("listen-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    if (!file) showError("listen: choose an audio file first, or record");
    else transcribe(file, file.name);
  });
  $("record").addEventListener("click", record);
  const player = $("playback");
  player.addEventListener("play", follow);
  player.addEventListener("seeked", highlight);
  player.addEventListener("timeupdate", highlight);
  for (const b of document.querySelectorAll(".caption")) {
    b.addEventListener("click", () => download(b.dataset.format));
  }
}
