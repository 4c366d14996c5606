#!/usr/bin/python3
"""A real RTSP camera for tests: GStreamer's RTSP server (Debian's python3-gi,
gir1.2-gst-rtsp-server-1.0) serving an H.264 MP4 file over TCP and UDP.
Each client gets its own pipeline, playing the file once from the start.

usage: rtsp_server.py PORT FILE [--user U --password P] [--codec h265] [--audio pcma|pcmu|aac]   (serves /cam)
With --audio, a 440 Hz tone goes with the video as a second track, as a doorbell's or IP camera's
microphone would (G.711 A-law or mu-law at 8 kHz, or AAC).
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("port")
parser.add_argument("file")
parser.add_argument("--user")
parser.add_argument("--password")
parser.add_argument("--no-video", action="store_true", help="serve an audio-only stream")
parser.add_argument("--codec", choices=["h264", "h265"], default="h264", help="the video codec in FILE")
parser.add_argument("--audio", choices=["pcma", "pcmu", "aac"], help="a tone as a second track, in this codec")
args = parser.parse_args()

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(args.port)

factory = GstRtspServer.RTSPMediaFactory()
if args.no_video:
    factory.set_launch("( audiotestsrc is-live=true ! audioconvert ! mulawenc ! rtppcmupay name=pay0 pt=0 )")
else:
    audio = {
        "pcma": "alawenc ! rtppcmapay name=pay1 pt=8",
        "pcmu": "mulawenc ! rtppcmupay name=pay1 pt=0",
        "aac": "voaacenc bitrate=64000 ! rtpmp4gpay name=pay1 pt=97",
    }
    tone = (
        f" audiotestsrc is-live=true freq=440 ! audio/x-raw,rate={16000 if args.audio == 'aac' else 8000},channels=1"
        f" ! audioconvert ! {audio[args.audio]}"
        if args.audio
        else ""
    )
    factory.set_launch(
        f"( filesrc location={args.file} ! qtdemux ! {args.codec}parse config-interval=-1 ! rtp{args.codec}pay name=pay0 pt=96{tone} )"
    )
factory.set_shared(False)

if args.user:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role("camera", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
    permissions.add_permission_for_role("camera", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    factory.set_permissions(permissions)

server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on port {args.port}")
print(f"ready rtsp://127.0.0.1:{args.port}/cam", flush=True)
GLib.MainLoop().run()
