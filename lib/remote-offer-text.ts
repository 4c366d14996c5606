// The text a paired browser signs for a remote offer, and the box checks the signature over:
// every field that decides what the session is. One function for both sides (the box and the
// web app); README's "The protocol" states it for other clients.
export function remoteOfferText(o: {
  box: string;
  browser?: string | undefined;
  id: string;
  at: number;
  camera?: string | undefined;
  stream: string;
  sdp: string;
}): string {
  return ['fogedge-remote-offer/1', o.box, o.browser ?? '', o.id, String(o.at), o.camera ?? '', o.stream, o.sdp].join(
    '\n',
  );
}
