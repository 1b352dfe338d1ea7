import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  createDeltaBatcher,
  createIncrementalDecoder,
  createStopMatcher,
  decodeTokens,
  streamedTextOf,
} from "../../src/engine/index.ts";

/** A byte-level vocabulary like the test models': token = byte. */
const byteOf = (token: number) => Uint8Array.of(token);

/** Pieces given as hex byte groups: "f09f98|e696" -> tokens 0, 1 with those bytes. */
function hexPieces(spec: string) {
  const pieces = spec.split("|").map((group) => Uint8Array.from(Buffer.from(group, "hex")));
  return {
    tokens: pieces.map((_, index) => index),
    bytesOf: (token: number) => pieces[token] ?? new Uint8Array(),
  };
}

function streamed(tokens: readonly number[], bytesOf: (token: number) => Uint8Array) {
  const decoder = createIncrementalDecoder(bytesOf);
  const deltas = tokens.map((token) => decoder.push(token));
  return { deltas, text: deltas.join("") + decoder.flush() };
}

describe("incremental decoder", () => {
  it("holds back an incomplete UTF-8 character until it is complete", () => {
    const decoder = createIncrementalDecoder(byteOf);
    const bytes = [...Buffer.from("a€b")];
    const out = bytes.map((byte) => decoder.push(byte));
    assert.deepEqual(out, ["a", "", "", "€", "b"]);
    assert.equal(decoder.flush(), "");
  });

  it("turns invalid bytes into U+FFFD at once, so they cannot stall the stream", () => {
    const decoder = createIncrementalDecoder(byteOf);
    const out = [0xe2, 0xe2, 0xe2, 0x41].map((byte) => decoder.push(byte));
    assert.deepEqual(out, ["", "\uFFFD", "\uFFFD", "\uFFFDA"]);
    assert.equal(decoder.flush(), "");
  });

  it("keeps a valid character that follows stray bytes (文 after f09f98|f09f98|f09f|e696|87)", () => {
    const { tokens, bytesOf } = hexPieces("f09f98|f09f98|f09f|e696|87");
    const { deltas, text } = streamed(tokens, bytesOf);
    assert.equal(text, "\uFFFD\uFFFD\uFFFD文");
    assert.equal(deltas.at(-1), "文", "the character comes out with the token that completes it");
    assert.equal(decodeTokens(tokens, bytesOf), text, "streamed and whole give the same text");
  });

  it("assembles characters split across tokens, and a truncated one at the end becomes U+FFFD", () => {
    const { tokens, bytesOf } = hexPieces("48c3|a9e4b8|96f09f|8d84|20f0|9f");
    assert.equal(streamed(tokens, bytesOf).text, "Hé世🍄 \uFFFD");
    assert.equal(decodeTokens(tokens, bytesOf), "Hé世🍄 \uFFFD");
  });

  it("keeps a leading byte-order mark and empty pieces add nothing", () => {
    const { tokens, bytesOf } = hexPieces("efbbbf41||42");
    assert.equal(streamed(tokens, bytesOf).text, "\uFEFFAB");
    assert.equal(decodeTokens(tokens, bytesOf), "\uFEFFAB");
  });

  it("concatenated deltas equal the text decoded at once, for every split of bytes", () => {
    const text = "Grüße, 世界! 🍄 mycel";
    const bytes = [...Buffer.from(text)];
    assert.equal(streamed(bytes, byteOf).text, text);
    // Random groupings of the bytes, with stray bytes mixed in: streamed == whole, always.
    let state = 7;
    const random = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 2 ** 32;
    };
    for (let round = 0; round < 200; round++) {
      const groups: number[][] = [];
      for (const byte of bytes) {
        if (groups.length === 0 || random() < 0.4) groups.push([]);
        groups.at(-1)?.push(byte);
        if (random() < 0.05) groups.at(-1)?.push(0x80 + Math.floor(random() * 0x7f));
      }
      const pieces = groups.map((group) => Uint8Array.from(group));
      const tokens = pieces.map((_, index) => index);
      const bytesOf = (token: number) => pieces[token] ?? new Uint8Array();
      assert.equal(streamed(tokens, bytesOf).text, decodeTokens(tokens, bytesOf));
    }
  });
});

describe("stop matcher", () => {
  it("cuts the text before the first stop sequence, across pushes", () => {
    const matcher = createStopMatcher(["END", "##"]);
    const pushes = ["hello E", "N", "D tail"].map((text) => matcher.push(text));
    assert.equal(pushes.map((push) => push.emit).join(""), "hello ");
    assert.deepEqual(
      pushes.map((push) => push.stopped),
      [false, false, true],
    );
  });

  it("releases held text that turned out not to be a stop sequence", () => {
    const matcher = createStopMatcher(["END"]);
    const first = matcher.push("abcE");
    assert.equal(first.emit, "abc");
    const second = matcher.push("Nx");
    assert.equal(second.emit, "ENx");
    assert.equal(matcher.push("EN").emit, "");
    assert.equal(matcher.flush(), "EN");
  });

  it("passes everything through without stop sequences", () => {
    const matcher = createStopMatcher([]);
    assert.deepEqual(matcher.push("END"), { emit: "END", stopped: false });
  });

  it("picks the earliest of several stop sequences", () => {
    const matcher = createStopMatcher(["zzz", "b"]);
    assert.deepEqual(matcher.push("abczzz"), { emit: "a", stopped: true });
  });
});

describe("the text a generation streams (streamedTextOf: what receipts commit to)", () => {
  /** Byte tokens, with 0xff standing for an end-of-generation token (no bytes of its own). */
  const endToken = 0xff;
  const textOf = (parameters: { tokens: number[]; prefix?: number[]; stops?: string[] }) =>
    streamedTextOf({
      bytesOf: (token) => (token === endToken ? new Uint8Array() : byteOf(token)),
      isEndOfGeneration: (token) => token === endToken,
      prefixTokens: parameters.prefix ?? [],
      outputTokens: parameters.tokens,
      stops: parameters.stops ?? [],
    });
  const bytes = (text: string) => [...Buffer.from(text)];

  it("is the decoded text, cut before a stop sequence, with nothing of the tokens after it", () => {
    assert.equal(textOf({ tokens: bytes("héllo 🍄") }), "héllo 🍄");
    assert.equal(textOf({ tokens: bytes("hello END tail"), stops: ["END"] }), "hello ");
    assert.equal(textOf({ tokens: [] }), "");
  });

  it("releases held text at the end: a stop prefix that never completed, and an incomplete character as U+FFFD", () => {
    assert.equal(textOf({ tokens: bytes("abcEN"), stops: ["END"] }), "abcEN", "length: held text released");
    assert.equal(textOf({ tokens: [...bytes("abcEN"), endToken], stops: ["END"] }), "abcEN", "end token");
    // The held stop prefix comes before the incomplete character's U+FFFD, in the order the bytes came.
    const cut = [...bytes("abE"), 0xc3];
    assert.equal(textOf({ tokens: cut, stops: ["END"] }), "abE\uFFFD");
    assert.equal(textOf({ tokens: [...cut, endToken], stops: ["END"] }), "abE\uFFFD");
  });

  it("goes on from a continuation's prefix: its held bytes and partial stop match carry over, its text does not", () => {
    const whole = bytes("prefix é and more");
    const split = whole.indexOf(0xc3) + 1;
    // The prefix ends inside "é": the continuation's text starts with the whole character.
    assert.equal(textOf({ prefix: whole.slice(0, split), tokens: whole.slice(split) }), "é and more");
    // A stop sequence begun in the prefix completes in the continuation: nothing is streamed.
    assert.equal(textOf({ prefix: bytes("say EN"), tokens: bytes("D now"), stops: ["END"] }), "");
    // One the continuation shows was no stop sequence comes out whole.
    assert.equal(textOf({ prefix: bytes("say EN"), tokens: bytes("X"), stops: ["END"] }), "ENX");
  });

  it("joins to the prefix's text: prefix text + continuation text = the text of all tokens, for every split", () => {
    const tokens = bytes("Grüße 🍄 END? no, ENDE");
    const stops = ["ENDE"];
    const all = textOf({ tokens, stops });
    for (let split = 1; split < tokens.length; split++) {
      const decoder = createIncrementalDecoder(byteOf);
      const matcher = createStopMatcher(stops);
      let before = "";
      for (const token of tokens.slice(0, split)) before += matcher.push(decoder.push(token)).emit;
      assert.equal(
        before + textOf({ prefix: tokens.slice(0, split), tokens: tokens.slice(split), stops }),
        all,
      );
    }
  });
});

describe("delta batcher", () => {
  it("sends the first item at once, gathers fast ones per interval, and flushes the rest", async () => {
    const batches: number[][] = [];
    const batcher = createDeltaBatcher<number>({
      intervalMs: 40,
      maxItems: 3,
      onBatch: (items) => batches.push(items),
    });
    batcher.push(1);
    assert.deepEqual(batches, [[1]], "the first item goes out at once");
    batcher.push(2);
    batcher.push(3);
    assert.deepEqual(batches, [[1]], "items right after a batch wait");
    // Fixed waits on purpose: the batcher's 40 ms timer is what is tested. Node runs due timers in order of their
    // due time, so on a loaded machine the batcher's timer still fires before these waits end.
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(batches, [[1], [2, 3]], "then go out together within the interval");
    await new Promise((resolve) => setTimeout(resolve, 50));
    batcher.push(4);
    assert.deepEqual(batches, [[1], [2, 3], [4]], "an item after a pause goes out at once");
    batcher.push(5);
    batcher.push(6);
    batcher.push(7);
    assert.deepEqual(batches.at(-1), [5, 6, 7], "a full batch goes out without waiting");
    batcher.push(8);
    batcher.flush();
    assert.deepEqual(batches.at(-1), [8], "flush hands over what waits");
    batcher.push(9);
    batcher.cancel();
    // A fixed wait on purpose: nothing may go out while the cancelled timer's interval passes.
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(batches.at(-1), [8], "cancel drops what waits");
  });
});
