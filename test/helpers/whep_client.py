#!/usr/bin/python3
"""A WHEP player that is not ours: GStreamer's webrtcbin (Debian's gstreamer1.0-plugins-bad,
gstreamer1.0-nice, gstreamer1.0-libav) offers to receive video, POSTs the offer to a WHEP URL,
sets the answer, decodes the H.264 it gets and counts the decoded frames.

usage: whep_client.py URL TOKEN SECONDS
prints "frames N WIDTHxHEIGHT" after SECONDS of play from the first frame, then DELETEs the session; exit 1 on failure.
"""
import sys
import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
SETUP_LIMIT_MS = 15_000
Gst.init(None)
pipeline = Gst.Pipeline.new("whep")
webrtc = Gst.ElementFactory.make("webrtcbin", "recv")
webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
pipeline.add(webrtc)
loop = GLib.MainLoop()
state = {"frames": 0, "size": "?", "location": None, "error": None}


def fail(message):
    state["error"] = message
    loop.quit()


caps = Gst.caps_from_string(
    "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1"
)
webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, caps)


def on_decoded(sink, buffer, pad):
    # SECONDS of play are counted from the first frame: ICE, DTLS and the wait for a keyframe are not play.
    if state["frames"] == 0:
        GLib.timeout_add(int(seconds * 1000), loop.quit)
    state["frames"] += 1
    structure = pad.get_current_caps().get_structure(0)
    state["size"] = f"{structure.get_int('width')[1]}x{structure.get_int('height')[1]}"


def on_pad(_, pad):
    if pad.direction != Gst.PadDirection.SRC:
        return
    chain = Gst.parse_bin_from_description(
        "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! fakesink name=sink signal-handoffs=true", True
    )
    pipeline.add(chain)
    chain.sync_state_with_parent()
    sink = chain.get_by_name("sink")
    sink.connect("handoff", on_decoded)
    pad.link(chain.get_static_pad("sink"))


webrtc.connect("pad-added", on_pad)


def request(method, target, body=None, content_type=None):
    req = urllib.request.Request(target, data=body, method=method)
    req.add_header("authorization", f"Bearer {token}")
    if content_type:
        req.add_header("content-type", content_type)
    return urllib.request.urlopen(req, timeout=15)


def on_offer(promise, _):
    reply = promise.get_reply()
    offer = reply.get_value("offer") if reply and reply.has_field("offer") else None
    if offer is None:
        return fail(f"webrtcbin made no offer: {reply.to_string() if reply else 'no reply'}")
    webrtc.emit("set-local-description", offer, None)


def on_gathered(element, _):
    # Not trickled: the whole offer, candidates in it, as a simple WHEP client sends it.
    if element.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
        return
    sdp = element.get_property("local-description").sdp.as_text()
    try:
        res = request("POST", url, sdp.encode(), "application/sdp")
    except urllib.error.HTTPError as err:
        return fail(f"POST {err.code}: {err.read().decode()}")
    if res.status != 201:
        return fail(f"POST answered {res.status}")
    state["location"] = res.headers["location"]
    _, message = GstSdp.SDPMessage.new_from_text(res.read().decode())
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
    webrtc.emit("set-remote-description", answer, None)


webrtc.connect("notify::ice-gathering-state", on_gathered)
pipeline.set_state(Gst.State.PLAYING)
webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))
GLib.timeout_add(SETUP_LIMIT_MS + int(seconds * 1000), loop.quit)  # no first frame: "frames 0"
loop.run()
pipeline.set_state(Gst.State.NULL)
if state["location"]:
    base = url.split("/api/")[0]
    try:
        request("DELETE", base + state["location"])
    except urllib.error.HTTPError:
        pass
if state["error"]:
    print(state["error"], flush=True)
    sys.exit(1)
print(f"frames {state['frames']} {state['size']}", flush=True)
