// Speak panel: the speech WebSocket stream played through Web Audio as it arrives, and the
// same text from /v1/audio/speech as a file to keep.

import { getJSON, openSocket, request, saveBlob, showError, socketFailure } from "./api.js";
import { installed } from "./models.js";

const $ = (id) => document.getElementById(id);
const EXTENSIONS = { mp3: "mp3", opus: "opus", aac: "aac", flac: "flac", wav: "wav", pcm: "pcm" };

let audio = null; // one AudioContext for the page, made on the first click (autoplay rules)
let session = null;

function adapterOf(name) {
  return installed.find((m) => m.name === name)?.adapter;
}

function fillModels(models) {
  const select = $("tts-model");
  const current = select.value;
  select.replaceChildren(
    ...models.filter((m) => m.type === "tts").map((m) => new Option(m.name, m.name)),
  );
  if ([...select.options].some((o) => o.value === current)) select.value = current;
  if (select.value !== current) loadVoices(); // a refresh keeps the voice chosen
}

async function loadVoices() {
  const model = $("tts-model").value;
  const voice = $("voice");
  voice.replaceChildren();
  $("voice2").replaceChildren(new Option("none", ""));
  // kokoro mixes voices ("a*0.7+b*0.3"); the other families speak one voice at a time.
  $("blend").hidden = adapterOf(model) !== "kokoro";
  if (!model) return;
  try {
    const body = await getJSON(`/api/voices?model=${encodeURIComponent(model)}`);
    for (const v of body.voices) {
      const label = [v.id, v.language, v.gender].filter(Boolean).join(" · ");
      voice.append(new Option(label, v.id, false, v.id === body.default));
      $("voice2").append(new Option(label, v.id));
    }
  } catch (exc) {
    showError(`voices of ${model}: ${exc.message}`);
  }
}

function chosenVoice() {
  const first = $("voice").value;
  const second = $("blend").hidden ? "" : $("voice2").value;
  if (!second || second === first) return first || undefined;
  const share = Number($("mix").value);
  return `${first}*${share.toFixed(2)}+${second}*${(1 - share).toFixed(2)}`;
}

function settings() {
  return { model: $("tts-model").value, voice: chosenVoice(), speed: Number($("speed").value) };
}

function status(text, state) {
  const el = $("speak-status");
  el.textContent = text;
  if (state) el.dataset.state = state;
}

function stop() {
  if (!session) return;
  if (session.socket.readyState === WebSocket.OPEN) session.socket.send(JSON.stringify({ type: "cancel" }));
  for (const source of session.sources) source.stop();
  session.sources = [];
}

// pcm16 frames become AudioBuffers scheduled back to back: playback starts with the first
// sentence while the server is still making the rest.
function play(frame) {
  const samples = new Int16Array(frame);
  const buffer = audio.createBuffer(1, samples.length, session.rate);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < samples.length; i += 1) channel[i] = samples[i] / 32768;
  const source = audio.createBufferSource();
  source.buffer = buffer;
  source.connect(audio.destination);
  session.at = Math.max(session.at, audio.currentTime + 0.05);
  source.start(session.at);
  session.at += buffer.duration;
  session.sources.push(source);
  const playing = session.sources;
  source.addEventListener("ended", () => {
    const i = playing.indexOf(source);
    if (i >= 0) playing.splice(i, 1);
  });
  session.samples += samples.length;
  const el = $("speak-status");
  el.dataset.samples = String(session.samples);
  el.dataset.sampleRate = String(session.rate);
}

async function speak(event) {
  event.preventDefault();
  showError("");
  stop();
  audio ??= new AudioContext();
  await audio.resume();
  const started = performance.now();
  const socket = openSocket("/v1/audio/speech/stream");
  const current = { socket, rate: 0, at: 0, samples: 0, sources: [], opened: false, ended: false };
  session = current;
  $("speak-status").dataset.samples = "0";
  $("speak-stop").disabled = false;
  status("connecting", "connecting");
  socket.addEventListener("open", () => {
    current.opened = true;
    socket.send(JSON.stringify({ type: "config", response_format: "pcm16", ...settings() }));
    socket.send(JSON.stringify({ type: "text", text: $("text").value }));
    socket.send(JSON.stringify({ type: "end" }));
    status("waiting for the first sentence", "streaming");
  });
  socket.addEventListener("message", ({ data }) => {
    if (session !== current) return;
    if (data instanceof ArrayBuffer) {
      if (!current.samples) {
        current.firstMs = Math.round(performance.now() - started);
        $("speak-status").dataset.firstAudioMs = String(current.firstMs);
      }
      play(data);
      status(`playing; first audio after ${current.firstMs} ms`);
      return;
    }
    const message = JSON.parse(data);
    if (message.type === "audio_start") current.rate = message.sample_rate;
    else if (message.type === "progress") {
      status(`first audio after ${current.firstMs} ms; ${message.chunks_completed} sentence(s) made`);
    } else if (message.type === "error") {
      current.ended = true;
      status(`failed: ${message.message}`, "error");
      showError(`speak: ${message.message}`);
    } else if (message.type === "done") {
      current.ended = true;
      const seconds = (current.samples / (current.rate || 1)).toFixed(2);
      status(`done: ${seconds} s of audio, first audio after ${current.firstMs ?? "-"} ms, made in ${message.processing_ms} ms`, "done");
      document.dispatchEvent(new Event("vox:used"));
    } else if (message.type === "cancelled") {
      current.ended = true;
      status("stopped", "cancelled");
    }
  });
  socket.addEventListener("close", async (closed) => {
    $("speak-stop").disabled = true;
    if (session !== current || current.ended) return;
    const why = await socketFailure(closed, current.opened);
    status(`failed: ${why}`, "error");
    showError(`speak: ${why}`);
  });
}

async function download() {
  showError("");
  const format = $("format").value;
  const button = $("speak-download");
  button.disabled = true;
  try {
    const response = await request("/v1/audio/speech", {
      method: "POST",
      json: { ...settings(), input: $("text").value, response_format: format },
    });
    saveBlob(await response.blob(), `speech.${EXTENSIONS[format]}`);
  } catch (exc) {
    showError(`download: ${exc.message}`);
  } finally {
    button.disabled = false;
  }
}

export function setup() {
  document.addEventListener("vox:models", (e) => fillModels(e.detail));
  $("tts-model").addEventListener("change", loadVoices);
  $("speed").addEventListener("input", () => {
    $("speed-out").textContent = Number($("speed").value).toFixed(2);
  });
  $("speak-form").addEventListener("submit", speak);
  $("speak-stop").addEventListener("click", stop);
  $("speak-download").addEventListener("click", download);
}
