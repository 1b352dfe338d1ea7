import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createDeltaBatcher, createIncrementalDecoder, createStopMatcher } from "../../src/engine/index.ts";

/** A byte-level detokenizer like the test models': token = byte. */
const decodeBytes = (tokens: readonly number[]) => Buffer.from(tokens).toString("utf8");

describe("incremental decoder", () => {
  it("holds back an incomplete UTF-8 character until it is complete", () => {
    const decoder = createIncrementalDecoder(decodeBytes);
    const bytes = [...Buffer.from("a€b")];
    const out = bytes.map((byte) => decoder.push(byte));
    assert.deepEqual(out, ["a", "", "", "€", "b"]);
    assert.equal(decoder.flush(), "");
  });

  it("gives up holding after 4 tokens so invalid bytes cannot stall the stream", () => {
    const decoder = createIncrementalDecoder(decodeBytes);
    const out = [0xe2, 0xe2, 0xe2, 0xe2].map((byte) => decoder.push(byte));
    assert.equal(out.slice(0, 3).join(""), "");
    assert.ok(out[3]?.includes("\uFFFD"));
  });

  it("concatenated deltas equal the text decoded at once", () => {
    const text = "Grüße, 世界! 🍄 mycel";
    const decoder = createIncrementalDecoder(decodeBytes);
    const streamed = [...Buffer.from(text)].map((byte) => decoder.push(byte)).join("") + decoder.flush();
    assert.equal(streamed, text);
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
