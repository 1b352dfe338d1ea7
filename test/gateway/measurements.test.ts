import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  createProviderTable,
  decodingRate,
  minimumStreamingSpanMs,
  minimumTokensForRate,
  runSegment,
} from "../../src/gateway/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";
import { scriptedModel, startScriptedProvider } from "../fixtures/scriptedProviders.ts";
import { textRequest } from "../fixtures/signedReceipts.ts";

describe("gateway measurements", () => {
  it("counts a long enough stream's tokens after the first chunk over the time they took", () => {
    const rate = decodingRate({
      startedAt: 0,
      firstChunkAt: 100,
      firstChunkTokens: 1,
      endedAt: 1_100,
      tokens: 101,
    });
    assert.equal(rate, 100);
  });

  it("measures chunks that arrive together over the whole segment, never faster than it really was", () => {
    // 64 tokens whose chunks all arrived within 2 ms, 400 ms after the request went out.
    const rate = decodingRate({
      startedAt: 0,
      firstChunkAt: 398,
      firstChunkTokens: 1,
      endedAt: 400,
      tokens: 64,
    });
    assert.equal(rate, 160, "64 tokens over the 400 ms of the segment, not 63 tokens over 2 ms");
    assert.ok(minimumStreamingSpanMs > 2);
  });

  it("does not measure answers too short to tell", () => {
    const timing = { startedAt: 0, firstChunkAt: 10, firstChunkTokens: 1, endedAt: 500 };
    assert.equal(decodingRate({ ...timing, tokens: minimumTokensForRate - 1 }), undefined);
    assert.notEqual(decodingRate({ ...timing, tokens: minimumTokensForRate }), undefined);
  });

  it("keeps a provider's throughput sane when its whole answer arrives in one burst", async () => {
    const network = createMemoryNetwork();
    // 16 tokens made over 16 x 20 ms, then sent all at once.
    const provider = await startScriptedProvider({
      network,
      peerId: "bursty",
      scripts: [
        {
          kind: "honest",
          tokens: Array.from({ length: 16 }, (_, index) => index + 1),
          text: "x",
          delayMs: 20,
          burst: true,
        },
      ],
    });
    const node = network.node("gateway");
    const known = createProviderTable({ node, logger: silentLogger }).accept(provider.announcement);
    const started = performance.now();
    const segment = await runSegment(
      { node },
      {
        provider: known,
        requestId: `0x${"12".repeat(32)}`,
        client: `0x${"34".repeat(20)}`,
        request: textRequest(scriptedModel.hash),
        paying: undefined,
        timeouts: { firstTokenMs: 5_000, stallMs: 5_000, banMs: 30_000 },
        signal: new AbortController().signal,
        onTokens: () => undefined,
      },
    );
    const elapsedSeconds = (performance.now() - started) / 1000;
    await segment.settle(undefined);
    assert.equal(segment.tokens.length, 16);
    const throughput = known.throughputTps ?? Number.NaN;
    assert.ok(
      throughput <= 16 / (0.9 * elapsedSeconds),
      `${throughput} tok/s for 16 tokens in ${elapsedSeconds} s`,
    );
    assert.ok(throughput > 0);
    assert.ok((known.latencyMs ?? 0) > 0, "the time to first token is measured too");
  });
});
