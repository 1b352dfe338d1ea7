import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  auditInputSchema,
  buildFingerprints,
  chunkFrameSchema,
  type Evidence,
  evidenceCommitment,
  evidenceSchema,
  type FingerprintChunk,
  fingerprintAt,
  fingerprintChunkSchema,
  fingerprintChunkTokens,
  fingerprintGapScale,
  fingerprintPositions,
  fingerprintsSchema,
  fingerprintTopTokens,
  hashFingerprints,
  hashStreamedText,
  type InferenceRequest,
  type PositionTopLogits,
  textBoundCommitment,
} from "../../src/protocol/index.ts";

const modelHash = `0x${"ab".repeat(32)}`;

/** `count` positions whose ids and gaps say which position they are (ids 4i..4i+3, gaps 0.1 apart). */
function positionsOf(count: number): PositionTopLogits[] {
  return Array.from({ length: count }, (_, index) => ({
    ids: [4 * index, 4 * index + 1, 4 * index + 2, 4 * index + 3],
    gaps: [0.1 * (index + 1), 0.2 * (index + 1), 0.3 * (index + 1)],
  }));
}

function sampleRequest(): InferenceRequest {
  return {
    model_hash: modelHash,
    kind: "chat",
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 16,
    temperature: 0,
    top_p: 1,
    top_k: 0,
    seed: 7,
    stop: [],
  };
}

function sampleEvidence(): Evidence {
  return {
    modelHash,
    promptTokens: [1, 2, 3],
    outputTokens: [0, 4, 8],
    fingerprints: buildFingerprints(positionsOf(3)),
    finishReason: "length",
  };
}

/** The first issue's message when `schema` refuses `value` (fails the test if it accepts it). */
function refusal(
  schema: { safeParse: (value: unknown) => { success: boolean; error?: unknown } },
  value: unknown,
) {
  const parsed = schema.safeParse(value);
  assert.equal(parsed.success, false, `refuses ${JSON.stringify(value).slice(0, 200)}`);
  const error = parsed.error as { issues: Array<{ message: string; path: PropertyKey[] }> };
  return `${error.issues[0]?.path.map(String).join(".")}: ${error.issues[0]?.message}`;
}

const clone = <T>(value: T): T => structuredClone(value);

describe("evidence: fingerprints", () => {
  it("chunks 32 positions per chunk, the last chunk shorter", () => {
    const fingerprints = buildFingerprints(positionsOf(70));
    assert.equal(fingerprintChunkTokens, 32);
    assert.deepEqual(
      fingerprints.map((chunk) => [chunk.ids.length, chunk.gaps.length]),
      [
        [32, 32],
        [32, 32],
        [6, 6],
      ],
    );
    assert.equal(fingerprintPositions(fingerprints), 70);
    assert.deepEqual(fingerprints[1]?.ids[0], [128, 129, 130, 131], "chunk 1 starts at position 32");
    assert.deepEqual(buildFingerprints(positionsOf(32)).length, 1, "exactly one full chunk");
    assert.deepEqual(buildFingerprints(positionsOf(33)).length, 2, "one position more opens a chunk");
    assert.deepEqual(buildFingerprints([]), [], "no output, no chunks");
    for (const chunk of fingerprints)
      assert.ok(fingerprintChunkSchema.safeParse(chunk).success, "valid chunk");
  });

  it("keeps gaps in milli-nats, rounded, never negative", () => {
    assert.equal(fingerprintGapScale, 1000);
    const [chunk] = buildFingerprints([
      { ids: [5, 6, 7, 8], gaps: [0.25, 1.0004, 1.0006] },
      { ids: [9, 10, 11, 12], gaps: [-0.003, 0, 12.3456] },
    ]);
    assert.deepEqual(chunk?.gaps, [
      [250, 1000, 1001],
      [0, 0, 12346],
    ]);
    assert.ok(
      chunk?.gaps.flat().every((gap) => Number.isInteger(gap)),
      "integers, so the commitment is exact",
    );
  });

  it("allows fewer than 4 ids and keeps only the top 4 of more", () => {
    const [chunk] = buildFingerprints([
      { ids: [1], gaps: [] },
      { ids: [2, 3], gaps: [0.5] },
      { ids: [4, 5, 6], gaps: [0.5, 0.75, 9] },
      { ids: [7, 8, 9, 10, 11, 12], gaps: [0.1, 0.2, 0.3, 0.4, 0.5] },
    ]);
    assert.equal(fingerprintTopTokens, 4);
    assert.deepEqual(chunk, {
      ids: [[1], [2, 3], [4, 5, 6], [7, 8, 9, 10]],
      gaps: [[], [500], [500, 750], [100, 200, 300]],
    });
    assert.ok(fingerprintChunkSchema.safeParse(chunk).success, "a chunk with short positions is valid");
  });

  it("fingerprintAt finds a position across chunks and nothing past the end", () => {
    const fingerprints = buildFingerprints(positionsOf(40));
    assert.deepEqual(fingerprintAt(fingerprints, 0), { ids: [0, 1, 2, 3], gaps: [100, 200, 300] });
    assert.deepEqual(fingerprintAt(fingerprints, 31)?.ids, [124, 125, 126, 127]);
    assert.deepEqual(fingerprintAt(fingerprints, 32), {
      ids: [128, 129, 130, 131],
      gaps: [3300, 6600, 9900],
    });
    assert.deepEqual(fingerprintAt(fingerprints, 39)?.ids, [156, 157, 158, 159]);
    assert.equal(fingerprintAt(fingerprints, 40), undefined, "past the end");
    assert.equal(fingerprintAt(fingerprints, 1000), undefined, "far past the end");
    assert.equal(fingerprintAt([], 0), undefined, "no fingerprints");
    const missingMiddle = [
      fingerprints[0],
      { ids: [], gaps: [] },
      ...fingerprints.slice(1),
    ] as FingerprintChunk[];
    assert.equal(fingerprintAt(missingMiddle, 32), undefined, "an empty chunk has no positions");
  });

  it("property: every position lands where fingerprintAt looks, schema-valid, gaps within half a milli-nat", () => {
    const position = fc
      .tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 1_000_000 }))
      .chain(([size, base]) =>
        fc.record({
          ids: fc.constant(Array.from({ length: size }, (_, slot) => base + slot)),
          gaps: fc.array(fc.double({ min: 0, max: 50, noNaN: true }), {
            minLength: size - 1,
            maxLength: size - 1,
          }),
        }),
      );
    fc.assert(
      fc.property(fc.array(position, { maxLength: 130 }), (positions) => {
        const fingerprints = buildFingerprints(positions);
        assert.equal(
          fingerprints.length,
          Math.ceil(positions.length / fingerprintChunkTokens),
          "chunk count",
        );
        assert.equal(fingerprintPositions(fingerprints), positions.length, "every position once");
        assert.ok(fingerprintsSchema.safeParse(fingerprints).success, "schema-valid");
        fingerprints.slice(0, -1).forEach((chunk, index) => {
          assert.equal(chunk.ids.length, fingerprintChunkTokens, `chunk ${index} is full`);
        });
        positions.forEach((expected, index) => {
          const found = fingerprintAt(fingerprints, index);
          assert.ok(found, `position ${index} is found`);
          assert.deepEqual(found.ids, expected.ids.slice(0, fingerprintTopTokens), `ids at ${index}`);
          found.gaps.forEach((gap, slot) => {
            const exact = (expected.gaps[slot] as number) * fingerprintGapScale;
            assert.ok(Math.abs(gap - exact) <= 0.5, `gap ${slot} at ${index}: ${gap} vs ${exact}`);
          });
        });
        assert.equal(fingerprintAt(fingerprints, positions.length), undefined, "nothing past the end");
      }),
      { numRuns: 200 },
    );
  });
});

describe("evidence: commitment", () => {
  const fingerprints = buildFingerprints(positionsOf(40));

  it("is stable for equal evidence, whatever the key order", () => {
    const commitment = evidenceCommitment({ fingerprints, finishReason: "length" });
    assert.match(commitment, /^0x[0-9a-f]{64}$/);
    assert.equal(
      evidenceCommitment({ fingerprints: clone(fingerprints), finishReason: "length" }),
      commitment,
    );
    const reordered = fingerprints.map((chunk) => ({ gaps: chunk.gaps, ids: chunk.ids }));
    assert.equal(evidenceCommitment({ finishReason: "length", fingerprints: reordered }), commitment);
    assert.equal(
      evidenceCommitment({ fingerprints: JSON.parse(JSON.stringify(fingerprints)), finishReason: "length" }),
      commitment,
      "a JSON round trip (the wire) keeps it",
    );
  });

  it("changes with the finish reason, a dropped chunk or a dropped position", () => {
    const commitment = evidenceCommitment({ fingerprints, finishReason: "length" });
    assert.notEqual(evidenceCommitment({ fingerprints, finishReason: "stop" }), commitment);
    assert.notEqual(
      evidenceCommitment({ fingerprints: fingerprints.slice(0, 1), finishReason: "length" }),
      commitment,
    );
    const shorter = clone(fingerprints);
    shorter[1]?.ids.pop();
    shorter[1]?.gaps.pop();
    assert.notEqual(evidenceCommitment({ fingerprints: shorter, finishReason: "length" }), commitment);
    assert.notEqual(evidenceCommitment({ fingerprints: [], finishReason: "length" }), commitment);
  });

  it("property: changes when any one gap or id changes", () => {
    const commitment = evidenceCommitment({ fingerprints, finishReason: "length" });
    const change = fc.record({
      position: fc.integer({ min: 0, max: 39 }),
      slot: fc.integer({ min: 0, max: 3 }),
      field: fc.constantFrom("ids" as const, "gaps" as const),
      delta: fc.integer({ min: 1, max: 1000 }),
    });
    fc.assert(
      fc.property(change, ({ position, slot, field, delta }) => {
        const changed = clone(fingerprints);
        const chunk = changed[Math.floor(position / fingerprintChunkTokens)] as FingerprintChunk;
        const values = chunk[field][position % fingerprintChunkTokens] as number[];
        const at = slot % values.length;
        values[at] = (values[at] as number) + delta;
        assert.notEqual(
          evidenceCommitment({ fingerprints: changed, finishReason: "length" }),
          commitment,
          `${field}[${position}][${at}] + ${delta} changes the commitment`,
        );
      }),
      { numRuns: 200 },
    );
  });
});

describe("evidence: the text-bound commitment", () => {
  const fingerprints = buildFingerprints(positionsOf(40));
  const textHash = hashStreamedText("Grüße 🍄");

  it("is the hash of {finishReason, fingerprintsHash, textHash}: evidence with a textHash gives the same", () => {
    const commitment = textBoundCommitment({
      finishReason: "length",
      fingerprintsHash: hashFingerprints(fingerprints),
      textHash,
    });
    assert.equal(evidenceCommitment({ fingerprints, finishReason: "length", textHash }), commitment);
    assert.notEqual(
      evidenceCommitment({ fingerprints, finishReason: "length" }),
      commitment,
      "not the legacy one",
    );
    assert.equal(textHash, hashStreamedText("Grü" + "ße 🍄"), "chunk boundaries do not matter");
  });

  it("changes with the text (one character, its normal form, a space), the finish reason or the fingerprints", () => {
    const commitment = evidenceCommitment({ fingerprints, finishReason: "length", textHash });
    for (const text of ["Grüße 🍄 ", "Grusse 🍄", "Gru\u0308ße 🍄", "", "Grüße 🍄\u0000"])
      assert.notEqual(
        evidenceCommitment({ fingerprints, finishReason: "length", textHash: hashStreamedText(text) }),
        commitment,
        JSON.stringify(text),
      );
    assert.notEqual(evidenceCommitment({ fingerprints, finishReason: "stop", textHash }), commitment);
    assert.notEqual(
      evidenceCommitment({ fingerprints: fingerprints.slice(0, 1), finishReason: "length", textHash }),
      commitment,
    );
  });

  it("chunk text must be well-formed Unicode: a lone surrogate would hash like U+FFFD", () => {
    const chunk = (text: string) => ({ v: 1, type: "chunk", tokens: [1], text });
    assert.equal(hashStreamedText("\uD800"), hashStreamedText("\uFFFD"), "why it is refused");
    assert.ok(chunkFrameSchema.safeParse(chunk("🍄 \uFFFD ok")).success);
    for (const text of ["\uD800", "a\uDC00b", "\uD83C"])
      assert.equal(chunkFrameSchema.safeParse(chunk(text)).success, false, JSON.stringify(text));
  });
});

describe("evidence: schemas", () => {
  const chunk = (): FingerprintChunk => ({
    ids: [
      [1, 2, 3, 4],
      [5, 6],
    ],
    gaps: [[10, 20, 30], [5]],
  });

  it("accept well-formed chunks, evidence and audit input", () => {
    assert.ok(fingerprintChunkSchema.safeParse(chunk()).success, "a chunk");
    assert.ok(evidenceSchema.safeParse(sampleEvidence()).success, "evidence");
    assert.ok(
      evidenceSchema.safeParse({ ...sampleEvidence(), outputTokens: [], fingerprints: [] }).success,
      "an empty answer",
    );
    const input = { ...sampleEvidence(), request: sampleRequest() };
    assert.ok(auditInputSchema.safeParse(input).success, "audit input without a receipt");
    const textHash = hashStreamedText("hi");
    assert.ok(
      evidenceSchema.safeParse({ ...sampleEvidence(), textHash }).success,
      "evidence with a textHash",
    );
    assert.ok(auditInputSchema.safeParse({ ...input, textHash }).success, "audit input with a textHash");
    for (const bad of ["0x12", textHash.toUpperCase().replace("0X", "0x"), 7])
      assert.equal(
        evidenceSchema.safeParse({ ...sampleEvidence(), textHash: bad }).success,
        false,
        String(bad),
      );
  });

  it("refuse malformed chunks", () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ["ids/gaps length mismatch", { ...chunk(), gaps: [[10, 20, 30]] }, /one entry per position/],
      ["a gap too few", { ...chunk(), gaps: [[10, 20], [5]] }, /one gap per id after the first/],
      [
        "a gap too many",
        {
          ...chunk(),
          gaps: [
            [10, 20, 30],
            [5, 6],
          ],
        },
        /one gap per id after the first/,
      ],
      ["a negative gap", { ...chunk(), gaps: [[10, -1, 30], [5]] }, /gaps\.0\.1/],
      ["a fractional gap", { ...chunk(), gaps: [[10, 20.5, 30], [5]] }, /gaps\.0\.1/],
      [
        "a negative id",
        {
          ...chunk(),
          ids: [
            [1, 2, 3, -4],
            [5, 6],
          ],
        },
        /ids\.0\.3/,
      ],
      ["5 ids at a position", { ids: [[1, 2, 3, 4, 5]], gaps: [[1, 2, 3, 4]] }, /ids\.0/],
      ["a position without ids", { ids: [[]], gaps: [[]] }, /ids\.0/],
      ["an empty chunk", { ids: [], gaps: [] }, /ids/],
      ["an unknown field", { ...chunk(), logits: [] }, /logits|Unrecognized/i],
      [
        "33 positions",
        { ids: Array.from({ length: 33 }, () => [1]), gaps: Array.from({ length: 33 }, () => []) },
        /ids/,
      ],
    ];
    for (const [name, value, expected] of cases)
      assert.match(refusal(fingerprintChunkSchema, value), expected, name);
    assert.ok(
      fingerprintChunkSchema.safeParse({
        ids: Array.from({ length: 32 }, () => [1]),
        gaps: Array.from({ length: 32 }, () => []),
      }).success,
      "32 positions are fine",
    );
  });

  it("refuse malformed evidence", () => {
    const cases: Array<[string, unknown, RegExp]> = [
      [
        "uppercase hex",
        { ...sampleEvidence(), modelHash: modelHash.toUpperCase().replace("0X", "0x") },
        /modelHash/,
      ],
      [
        "short hex",
        { ...sampleEvidence(), modelHash: `0x${"ab".repeat(31)}` },
        /modelHash: must be 32 bytes/,
      ],
      ["no 0x", { ...sampleEvidence(), modelHash: "ab".repeat(32) }, /modelHash/],
      ["not hex", { ...sampleEvidence(), modelHash: `0x${"zz".repeat(32)}` }, /modelHash/],
      ["an empty prompt", { ...sampleEvidence(), promptTokens: [] }, /promptTokens/],
      ["a fractional token", { ...sampleEvidence(), outputTokens: [1.5] }, /outputTokens\.0/],
      ["finish reason cancelled", { ...sampleEvidence(), finishReason: "cancelled" }, /finishReason/],
      [
        "a bad chunk",
        { ...sampleEvidence(), fingerprints: [{ ids: [[1]], gaps: [[-1]] }] },
        /fingerprints\.0/,
      ],
      ["an unknown field", { ...sampleEvidence(), logits: [] }, /logits|Unrecognized/i],
    ];
    for (const [name, value, expected] of cases) assert.match(refusal(evidenceSchema, value), expected, name);
    const { fingerprints: _, ...withoutFingerprints } = sampleEvidence();
    assert.match(refusal(evidenceSchema, withoutFingerprints), /^fingerprints:/, "missing fingerprints");
  });

  it("refuse malformed audit input", () => {
    const input = () => ({ ...sampleEvidence(), request: sampleRequest() });
    const { fingerprints: _, ...withoutFingerprints } = input();
    assert.match(refusal(auditInputSchema, withoutFingerprints), /^fingerprints:/, "missing fingerprints");
    const { request: __, ...withoutRequest } = input();
    assert.match(refusal(auditInputSchema, withoutRequest), /^request:/, "missing request");
    assert.match(
      refusal(auditInputSchema, { ...input(), request: { ...sampleRequest(), temperature: -1 } }),
      /^request\.temperature/,
      "a bad request",
    );
    assert.match(
      refusal(auditInputSchema, { ...input(), receipt: { signature: "0x" } }),
      /^receipt/,
      "a bad receipt",
    );
    assert.match(
      refusal(auditInputSchema, { ...input(), finishReason: undefined }),
      /^finishReason/,
      "no reason",
    );
  });
});
