#!/usr/bin/env bash
# Debian packages the box and its tests use. Run as root (CI does; use sudo otherwise).
# One list, used by .ci/run, the README and the balena Dockerfiles.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  ffmpeg        # one per camera: records without transcoding (ffprobe checks segments)
  nats-server   # the service bus when nodes are split (and the multi-node tests)
  openssl       # TLS certificates
  ca-certificates
  util-linux    # setpriv: ffmpeg dies with the box, never orphaned
  # Tests only: a real RTSP camera (GStreamer's RTSP server, run by Debian's /usr/bin/python3)
  python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  # Tests only: a WHEP player that is not ours (GStreamer's webrtcbin, its ICE and H.264 decoder)
  gir1.2-gst-plugins-bad-1.0 gstreamer1.0-nice gstreamer1.0-libav
  # Tests only: the operator's STUN/TURN server (coturn's turnserver)
  coturn
  # Tests only: the away-from-home network (namespaces, veth pairs, a NAT firewall between them)
  iproute2 iptables
  # Tests only: real MQTT clients (mosquitto_sub, mosquitto_pub), and Debian's mosquitto broker as
  # the operator's (ADMP) broker and the reference of npm run bench:mqtt
  mosquitto-clients mosquitto
  # Tests only: the browsers of the web UI tests (Chromium driven by playwright-core, Firefox by
  # puppeteer-core over WebDriver BiDi), and a font for them
  chromium firefox-esr fonts-dejavu-core
)
apt-get update
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
# mosquitto's own service is stopped and disabled: port 1883 belongs to the box's broker.
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now mosquitto || true
  systemctl disable --now coturn || true # the tests start their own
fi
