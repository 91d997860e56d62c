// What the page reads from the server, as pure functions: a span by code-point offsets, a stream of
// server-sent events, an answer text with its [n] markers. No DOM here, so each can be tested alone.

// The server's offsets count code points (Python str); JS strings count UTF-16 units, so a character outside
// the BMP (an emoji) would shift a plain text.slice(). Returns [before, span, after] or null when out of range.
export function codePointSpan(text, start, end) {
  const points = Array.from(text);
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= points.length)) {
    return null;
  }
  return [points.slice(0, start).join(""), points.slice(start, end).join(""), points.slice(end).join("")];
}

// A server-sent-events reader fed with decoded chunks; calls onEvent({event, data}) per dispatched event.
// Lines may end in \r\n, \n or \r, and a chunk may stop between the \r and the \n.
export function sseParser(onEvent) {
  let buffer = "";
  let event = "";
  let data = [];
  function line(text) {
    if (text === "") {
      if (data.length) onEvent({ event: event || "message", data: data.join("\n") });
      event = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return; // a comment: keep-alive pings
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return {
    push(chunk) {
      buffer += chunk;
      const ends = /\r\n|\r|\n/g;
      let last = 0;
      let m;
      while ((m = ends.exec(buffer)) !== null) {
        if (m[0] === "\r" && m.index === buffer.length - 1) break; // maybe half of \r\n
        line(buffer.slice(last, m.index));
        last = ends.lastIndex;
      }
      buffer = buffer.slice(last);
    },
    end() {
      if (buffer) line(buffer.replace(/\r$/, ""));
      buffer = "";
      line("");
    },
  };
}

// The answer text cut into strings and citation numbers: "a [1] b [2, 3]." -> ["a ", 1, " b ", 2, 3, "."].
// Numbers the citations do not hold stay text.
export function answerParts(text, numbers) {
  const parts = [];
  const markers = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  let last = 0;
  let m;
  while ((m = markers.exec(text)) !== null) {
    const ns = m[1].split(",").map((s) => Number(s.trim()));
    if (!ns.every((n) => numbers.has(n))) continue;
    if (m.index > last) parts.push(text.slice(last, m.index));
    parts.push(...ns);
    last = markers.lastIndex;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}
