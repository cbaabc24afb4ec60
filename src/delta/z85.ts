/**
 * Z85 (ZeroMQ RFC 32) as Delta uses it for deletion vectors: the UUID of a `u` descriptor and the bitmap bytes of
 * an inline (`i`) descriptor.
 */
import { TributaryError } from '../core/errors.js';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

function digit(text: string, at: number, what: string): number {
  const code = text.charCodeAt(at);
  const value = code < 128 ? (DECODE[code] as number) : -1;
  if (value < 0) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Invalid Z85 character ${JSON.stringify(text[at])} at ${at} in ${what}`,
    );
  }
  return value;
}

/**
 * Decodes Z85 text. Two tail conventions exist in the wild and both are accepted: Spark pads the input to a
 * multiple of 4 bytes with zeros (the caller truncates to the known size), while the Rust `z85` crate writes a
 * short last chunk as k `#` characters followed by the 4-k remaining bytes in 5-k digits. A full chunk can never
 * start with `#` (84·85⁴ > 2³²), so the two cannot be confused.
 *
 * `what` names the source in error messages (e.g. the table and file the descriptor belongs to).
 */
export function z85Decode(text: string, what = 'Z85 text'): Uint8Array {
  if (text.length % 5 !== 0) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Z85 text of length ${text.length} in ${what} is not a multiple of 5`,
    );
  }
  const out = new Uint8Array((text.length / 5) * 4);
  let written = 0;
  for (let i = 0; i < text.length; i += 5) {
    let pad = 0;
    if (text[i] === '#') {
      if (i + 5 !== text.length) {
        throw new TributaryError('DELTA_CORRUPT', `Z85 text in ${what} has a padded chunk before its end`);
      }
      while (pad < 4 && text[i + pad] === '#') pad++;
    }
    let value = 0;
    for (let j = pad; j < 5; j++) value = value * 85 + digit(text, i + j, what);
    const bytes = 4 - pad;
    if (value >= 2 ** (8 * bytes)) {
      throw new TributaryError('DELTA_CORRUPT', `Z85 chunk ${text.slice(i, i + 5)} in ${what} overflows`);
    }
    for (let b = bytes - 1; b >= 0; b--) {
      out[written + b] = value % 256;
      value = Math.floor(value / 256);
    }
    written += bytes;
  }
  return out.subarray(0, written);
}

/** Encodes bytes whose length is a multiple of 4 (Spark zero-pads before encoding; so must the caller). */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0) throw new RangeError('Z85 input length must be a multiple of 4');
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value =
      (bytes[i] as number) * 2 ** 24 +
      ((bytes[i + 1] as number) << 16) +
      ((bytes[i + 2] as number) << 8) +
      (bytes[i + 3] as number);
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.push(ALPHABET[value % 85] as string);
      value = Math.floor(value / 85);
    }
    out += chunk.reverse().join('');
  }
  return out;
}
