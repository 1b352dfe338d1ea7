import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Stream } from "@libp2p/interface";
import { streamPair } from "@libp2p/utils";
import { InvalidInputError } from "../../src/errors/index.ts";
import {
  createFrameChannel,
  FrameDecodeError,
  FrameStreamClosedError,
  FrameTimeoutError,
  FrameTooLargeError,
  FrameUsageError,
} from "../../src/p2p/index.ts";

/** One length-prefixed frame of raw bytes (a one-byte varint: payloads under 128 bytes). */
function rawFrame(payload: string | Uint8Array): Uint8Array {
  const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  assert.ok(bytes.byteLength < 128);
  return Uint8Array.from([bytes.byteLength, ...bytes]);
}

async function pair(): Promise<[Stream, Stream]> {
  return streamPair({ delay: 0 });
}

describe("frame channel (in-memory stream pair)", () => {
  it("reads frames split into single bytes and frames packed into one chunk", async () => {
    const [outbound, inbound] = await pair();
    const reader = createFrameChannel(inbound, { maxFrameBytes: 1024 });
    const bytes = [...rawFrame('{"a":1}'), ...rawFrame("[2]"), ...rawFrame('"three"')];
    for (const byte of bytes.slice(0, 5)) outbound.send(Uint8Array.of(byte));
    outbound.send(Uint8Array.from(bytes.slice(5)));
    assert.deepEqual(await reader.read({ timeoutMs: 1_000 }), { a: 1 });
    assert.deepEqual(await reader.read({ timeoutMs: 1_000 }), [2]);
    assert.equal(await reader.read({ timeoutMs: 1_000 }), "three");
    await outbound.close();
    assert.equal(await reader.read({ timeoutMs: 1_000 }), undefined);
    assert.equal(await reader.read({ timeoutMs: 1_000 }), undefined, "stays at the end");
  });

  it("moves large frames with backpressure, in order", async () => {
    const [outbound, inbound] = await pair();
    const writer = createFrameChannel(outbound, { maxFrameBytes: 200_000 });
    const reader = createFrameChannel(inbound, { maxFrameBytes: 200_000 });
    const count = 30;
    const writing = (async () => {
      for (let index = 0; index < count; index++) await writer.write({ index, filler: "f".repeat(150_000) });
      await writer.close();
    })();
    for (let index = 0; index < count; index++) {
      const value = (await reader.read({ timeoutMs: 5_000 })) as { index: number; filler: string };
      assert.equal(value.index, index);
      assert.equal(value.filler.length, 150_000);
    }
    assert.equal(await reader.read({ timeoutMs: 5_000 }), undefined);
    await writing;
  });

  it("fails one read on a frame that is not JSON or not UTF-8, then reads on", async () => {
    const [outbound, inbound] = await pair();
    const reader = createFrameChannel(inbound, { maxFrameBytes: 1024 });
    outbound.send(rawFrame("{not json"));
    outbound.send(rawFrame(Uint8Array.of(0xff, 0xfe)));
    outbound.send(rawFrame('"fine"'));
    await assert.rejects(reader.read({ timeoutMs: 1_000 }), FrameDecodeError);
    await assert.rejects(reader.read({ timeoutMs: 1_000 }), FrameDecodeError);
    assert.equal(await reader.read({ timeoutMs: 1_000 }), "fine");
  });

  it("reports a stream that ends in the middle of a frame", async () => {
    const [outbound, inbound] = await pair();
    const reader = createFrameChannel(inbound, { maxFrameBytes: 1024 });
    outbound.send(rawFrame('"whole"').subarray(0, 4));
    await outbound.close();
    await assert.rejects(reader.read({ timeoutMs: 1_000 }), FrameDecodeError);
  });

  it("refuses an oversize length prefix before its payload arrives, and resets the stream", async () => {
    const [outbound, inbound] = await pair();
    const reader = createFrameChannel(inbound, { maxFrameBytes: 100 });
    outbound.send(Uint8Array.of(0xe8, 0x07)); // varint 1000, no payload
    await assert.rejects(reader.read({ timeoutMs: 1_000 }), FrameTooLargeError);
    await assert.rejects(reader.read({ timeoutMs: 1_000 }), FrameTooLargeError, "the channel stays failed");
    assert.equal(inbound.status, "aborted");
  });

  it("keeps a partial frame across a timeout", async () => {
    const [outbound, inbound] = await pair();
    const reader = createFrameChannel(inbound, { maxFrameBytes: 1024 });
    const frame = rawFrame('{"split":true}');
    outbound.send(frame.subarray(0, 6));
    await assert.rejects(reader.read({ timeoutMs: 100 }), FrameTimeoutError);
    outbound.send(frame.subarray(6));
    assert.deepEqual(await reader.read({ timeoutMs: 1_000 }), { split: true });
  });

  it("honours an abort signal and refuses two reads at once", async () => {
    const [, inbound] = await pair();
    const reader = createFrameChannel(inbound, { maxFrameBytes: 1024 });
    const controller = new AbortController();
    const pending = reader.read({ signal: controller.signal });
    await assert.rejects(reader.read(), FrameUsageError);
    controller.abort(new Error("caller gave up"));
    await assert.rejects(pending, /caller gave up/);
  });

  it("rejects pending reads when either side aborts", async () => {
    const [outbound, inbound] = await pair();
    const reader = createFrameChannel(inbound, { maxFrameBytes: 1024 });
    const writer = createFrameChannel(outbound, { maxFrameBytes: 1024 });
    const pending = reader.read();
    writer.abort(new Error("writer quits"));
    await assert.rejects(pending, FrameStreamClosedError);
    await assert.rejects(writer.write({}), FrameStreamClosedError);

    const [, other] = await pair();
    const local = createFrameChannel(other, { maxFrameBytes: 1024 });
    const waiting = local.read();
    local.abort(new Error("reader quits"));
    await assert.rejects(waiting, /reader quits/);
  });

  it("refuses values that are not JSON and bad limits", async () => {
    const [outbound] = await pair();
    const writer = createFrameChannel(outbound, { maxFrameBytes: 1024 });
    await assert.rejects(writer.write(undefined), InvalidInputError);
    await assert.rejects(writer.write({ big: 1n }), InvalidInputError);
    assert.throws(() => createFrameChannel(outbound, { maxFrameBytes: 0 }), InvalidInputError);
  });
});
