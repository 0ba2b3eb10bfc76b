// encoding.js: the wire's two encodings (docs/protocol.md R-WIRE-9, R-WIRE-10), the counterpart of
// roost.protocol.encoding.
//
//   json     no subprotocol asked: text frames, one JSON object per client message, the server's objects
//            separated by "\n" (what the client always spoke)
//   msgpack  "roost.v1.msgpack": binary frames, one MessagePack map per client message, each server message
//            one array of maps; the codec is @msgpack/msgpack, locked in package-lock.json and vendored
//            verbatim in vendor/msgpack (scripts/vendor_web.py), loaded on first use only
//
// A codec: {name, subprotocol, binary, encode(frame), parts(data), decode(part)}: `parts` splits one WebSocket
// message into its frames, `decode` checks one with the rules of protocol.js (FrameError when it breaks them).

import { decodeServerFrame, decodeServerObject, FrameError, splitFrames, UsageError } from "./protocol.js";

export const SUBPROTOCOLS = Object.freeze({ json: "roost.v1.json", msgpack: "roost.v1.msgpack" });

/** JSON, as the client spoke before subprotocols: it asks for none (the server's default). */
export const JSON_CODEC = Object.freeze({
  name: "json",
  subprotocol: null,
  binary: false,
  encode: (frame) => JSON.stringify(frame),
  parts(data) {
    if (typeof data !== "string") throw new FrameError("expected a text message");
    return splitFrames(data);
  },
  decode: decodeServerFrame,
});

let msgpack = null;

/** The MessagePack codec over the vendored @msgpack/msgpack (imported once, on first use). */
async function msgpackCodec() {
  if (msgpack) return msgpack;
  const [{ Encoder }, { Decoder }] = await Promise.all([
    import("./vendor/msgpack/Encoder.mjs"),
    import("./vendor/msgpack/Decoder.mjs"),
  ]);
  // Absent fields are left out, as JSON.stringify leaves out `undefined` (a nil would be a value: R-WIRE-5).
  const encoder = new Encoder({ ignoreUndefined: true });
  const decoder = new Decoder();
  msgpack = Object.freeze({
    name: "msgpack",
    subprotocol: SUBPROTOCOLS.msgpack,
    binary: true,
    encode: (frame) => encoder.encode(frame),
    parts(data) {
      if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) throw new FrameError("expected a binary message");
      let value;
      try {
        value = decoder.decode(data);
      } catch (e) {
        throw new FrameError(`malformed MessagePack: ${e.message}`);
      }
      if (!Array.isArray(value)) throw new FrameError("invalid server message: expected an array of frames");
      return value;
    },
    decode: decodeServerObject,
  });
  return msgpack;
}

/** The codec named `name` ("json" or "msgpack"). */
export async function loadCodec(name = "json") {
  if (name === "json") return JSON_CODEC;
  if (name === "msgpack") return msgpackCodec();
  throw new UsageError(`encoding must be "json" or "msgpack", not ${JSON.stringify(name)}`);
}
