// Masks passwords in URLs (cameras, NATS) before they reach an answer or a log.
// Greedy up to the last '@' of the authority: a pasted password may contain '@' or ':'.

/** rtsp://user:pass@host/x -> rtsp://user:***@host/x */
export function redactUrl(url: string): string {
  return url.replace(/^(\w+:\/\/[^:/@]*:)[^/]*@/, '$1***@');
}

/** The same for every URL inside a text (ffmpeg's messages). */
export function redactText(text: string): string {
  return text.replace(/(\w+:\/\/[^:/@\s]*:)[^/\s]*@/g, '$1***@');
}
