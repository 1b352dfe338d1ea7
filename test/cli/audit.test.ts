import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type AuditInput, type Evidence, modelHashToBytes32 } from "../../src/protocol/index.ts";
import type { AnswerAuditVerdict } from "../../src/verify/index.ts";
import {
  addCheatModels,
  type CheatModels,
  cheatEngine,
  cheatingAnswer,
  fixtureRequest,
  honestAnswer,
  textAlteringAnswer,
} from "../fixtures/cheats.ts";
import { runMycelAudit, type ServeProcess, startMycelServer, temporaryHome } from "../helpers.ts";

/** What `mycel serve` returns for a chat completion asked with `mycel.include_evidence`. */
type ChatWithEvidence = {
  choices: Array<{ message: { content: string }; finish_reason: string }>;
  usage: { prompt_tokens: number; completion_tokens: number };
  mycel: { model_hash: string; seed: number; evidence?: Evidence };
};

describe("mycel audit (real processes)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let inputs: string;
  let models: CheatModels;

  const writeInput = async (name: string, value: unknown) => {
    const path = join(inputs, name);
    await writeFile(path, typeof value === "string" ? value : JSON.stringify(value));
    return path;
  };
  /** Runs `mycel audit --input <path>` and parses the verdict it prints. */
  const audit = (path: string) => runMycelAudit(path, { home: directory.home });
  /** Runs `mycel audit` on an answer of several segments and parses the combined verdict it prints. */
  const auditSegments = async (path: string) => {
    const run = await audit(path);
    return { ...run, combined: run.verdict as unknown as AnswerAuditVerdict | undefined };
  };
  /** An answer as a gateway returns it with include_evidence: `mycel.evidence` and `mycel.receipts` per segment. */
  const gatewayAnswer = (segments: AuditInput[]) => {
    const evidence = segments.map(({ receipt: _, ...rest }) => rest);
    return {
      id: "chatcmpl-0123456789abcdef",
      object: "chat.completion",
      created: 1_700_000_000,
      model: models.claimed,
      choices: [{ index: 0, message: { role: "assistant", content: "…" }, finish_reason: "length" }],
      mycel: {
        model_hash: models.claimed,
        failovers: segments.length - 1,
        receipts: segments.map((segment) => segment.receipt),
        evidence: evidence.length === 1 ? evidence[0] : evidence,
      },
    };
  };
  /** The same input with the request's last message changed: the prompt no longer matches the evidence. */
  const withChangedPrompt = <T extends { request: AuditInput["request"] }>(input: T): T => ({
    ...input,
    request: {
      ...input.request,
      messages: (input.request.messages ?? []).map((message, index, all) =>
        index === all.length - 1 ? { ...message, content: `${message.content} And fungi.` } : message,
      ),
    },
  });

  let honest: AuditInput;

  before(async () => {
    directory = await temporaryHome("mycel-cli-audit-");
    inputs = join(directory.home, "inputs");
    await mkdir(inputs);
    models = await addCheatModels(directory.home);
    const engine = await cheatEngine({ home: directory.home, models });
    try {
      const request = fixtureRequest({ models, index: 4, maxTokens: 40, temperature: 0 });
      honest = await honestAnswer({ engine, models, request });
      await writeInput("honest.json", honest);
      await writeInput(
        "lower_quant.json",
        await cheatingAnswer({ engine, models, request, cheat: "lower_quant" }),
      );
      await writeInput("alters_text.json", await textAlteringAnswer({ engine, models, request }));
    } finally {
      await engine.close();
    }
  });
  after(() => directory.remove());

  it("passes an honest answer: exit 0 and a JSON verdict", async () => {
    const run = await audit(join(inputs, "honest.json"));
    assert.equal(run.code, 0, `exit 0: ${run.stdout}${run.stderr}`);
    assert.ok(run.verdict, `prints JSON: ${run.stdout}`);
    assert.equal(run.verdict.verdict, "pass", run.stdout);
    assert.deepEqual(run.verdict.reasons, []);
    assert.equal(run.verdict.metrics.outputTokens, honest.outputTokens.length, "metrics.outputTokens");
    assert.equal(run.verdict.metrics.promptTokens, honest.promptTokens.length, "metrics.promptTokens");
  });

  it("fails a cheat: exit 1, verdict fail and its reasons", async () => {
    const run = await audit(join(inputs, "lower_quant.json"));
    assert.equal(run.code, 1, `exit 1: ${run.stdout}${run.stderr}`);
    assert.ok(run.verdict, `prints JSON: ${run.stdout}`);
    assert.equal(run.verdict.verdict, "fail");
    const codes = run.verdict.reasons.map((reason) => reason.code);
    assert.ok(codes.includes("fingerprint_mismatch"), `a q8_0 answer claimed as f16: ${codes.join()}`);
    assert.ok(
      run.verdict.reasons.every((reason) => reason.message.length > 0),
      "every reason has a message",
    );
  });

  it("fails an answer whose committed text is not its tokens' text: exit 1, text_mismatch", async () => {
    const run = await audit(join(inputs, "alters_text.json"));
    assert.equal(run.code, 1, `exit 1: ${run.stdout}${run.stderr}`);
    assert.deepEqual(
      run.verdict?.reasons.map((reason) => reason.code),
      ["text_mismatch"],
      run.stdout,
    );
  });

  it("takes a whole gateway answer: its evidence with its receipt, exit 0 and the verdict as for one input", async () => {
    const run = await audit(await writeInput("gateway-answer.json", gatewayAnswer([honest])));
    assert.equal(run.code, 0, `exit 0: ${run.stdout}${run.stderr}`);
    assert.equal(run.verdict?.verdict, "pass", run.stdout);
    assert.deepEqual(run.verdict?.reasons, []);
    assert.equal(
      run.verdict?.metrics.outputTokens,
      honest.outputTokens.length,
      "one segment: today's verdict",
    );
    assert.equal("segments" in (run.verdict ?? {}), false, "one segment prints no segments list");
  });

  it("audits every segment of an answer served in two: an overall verdict and one per segment", async () => {
    const run = await auditSegments(await writeInput("two-segments.json", gatewayAnswer([honest, honest])));
    assert.equal(run.code, 0, `exit 0: ${run.stdout}${run.stderr}`);
    assert.equal(run.combined?.verdict, "pass", run.stdout);
    assert.deepEqual(
      run.combined?.segments.map((entry) => [entry.segment, entry.verdict, entry.provider]),
      [
        [0, "pass", honest.receipt?.message.provider],
        [1, "pass", honest.receipt?.message.provider],
      ],
    );
  });

  it("fails a two-segment answer whose second segment is tampered with: exit 1, that segment's reasons", async () => {
    const run = await auditSegments(
      await writeInput("two-segments-tampered.json", gatewayAnswer([honest, withChangedPrompt(honest)])),
    );
    assert.equal(run.code, 1, `exit 1: ${run.stdout}${run.stderr}`);
    assert.equal(run.combined?.verdict, "fail", run.stdout);
    assert.deepEqual(
      run.combined?.segments.map((entry) => entry.verdict),
      ["pass", "fail"],
    );
    const codes = run.combined?.segments[1]?.reasons.map((reason) => reason.code) ?? [];
    assert.ok(codes.includes("prompt_mismatch"), `the changed prompt: ${codes.join()}`);
    assert.ok(codes.includes("receipt_invalid"), `the receipt signed another request: ${codes.join()}`);
  });

  describe("bad input: exit 2 and one clear line on stderr", () => {
    const expectBadInput = (
      run: { code: number | null; stdout: string; stderr: string },
      message: RegExp,
    ) => {
      assert.equal(run.code, 2, `exit 2: ${run.stdout}${run.stderr}`);
      assert.equal(run.stdout, "", "no verdict on stdout");
      assert.match(run.stderr, message);
      assert.doesNotMatch(run.stderr, /^\s+at /m, "no stack trace");
    };

    it("a missing file", async () => {
      const missing = join(inputs, "missing.json");
      expectBadInput(await audit(missing), new RegExp(`^error: cannot read the audit input ${missing}`, "m"));
    });

    it("a file that is not JSON", async () => {
      const path = await writeInput("not-json.json", "{ this is not json");
      expectBadInput(await audit(path), new RegExp(`^error: the audit input ${path} is not JSON`, "m"));
    });

    it("JSON without fingerprints", async () => {
      const { fingerprints: _, ...withoutFingerprints } = honest;
      const path = await writeInput("no-fingerprints.json", withoutFingerprints);
      expectBadInput(await audit(path), /^error: bad audit input: fingerprints /m);
    });

    it("a whole answer without mycel.evidence names include_evidence", async () => {
      const { evidence: _, ...mycelWithoutEvidence } = gatewayAnswer([honest]).mycel;
      const path = await writeInput("no-evidence.json", {
        ...gatewayAnswer([honest]),
        mycel: mycelWithoutEvidence,
      });
      const run = await audit(path);
      expectBadInput(run, /^error: the answer has no `mycel\.evidence`/m);
      assert.match(run.stderr, /"mycel": \{"include_evidence": true\}/, "names the fix");
    });

    it("a whole answer whose evidence the gateway could not get says so, with the error", async () => {
      const answer = gatewayAnswer([honest]);
      const path = await writeInput("evidence-error.json", {
        ...answer,
        mycel: { ...answer.mycel, evidence: { error: "provider 0xabc: the provider closed the stream" } },
      });
      expectBadInput(
        await audit(path),
        /^error: the gateway could not get the answer's evidence from the provider: provider 0xabc: the provider closed the stream/m,
      );
    });

    it("a model that is not in the store names `mycel model add`", async () => {
      const modelHash = `0x${"ab".repeat(32)}`;
      const path = await writeInput("unknown-model.json", {
        ...honest,
        modelHash,
        request: { ...honest.request, model_hash: modelHash },
      });
      const run = await audit(path);
      expectBadInput(run, new RegExp(`^error: model "sha256:${"ab".repeat(32)}" not found`, "m"));
      assert.match(run.stderr, /`mycel model add /, "names the fix");
    });
  });

  describe("evidence from `mycel serve` (include_evidence)", () => {
    let server: ServeProcess;

    before(async () => {
      server = await startMycelServer(
        ["serve", "--model", models.claimed, "--port", "0", "--parallelism", "1", "--threads", "1"],
        { home: directory.home },
      );
    });
    after(async () => {
      const code = await server?.stop();
      assert.equal(code, 0, "the server exits cleanly on SIGTERM");
    });

    const messages = [
      { role: "system", content: "You are a careful assistant. Answer plainly." },
      { role: "user", content: "Tell me about mycelium networks." },
    ];

    const chat = async (body: Record<string, unknown>) => {
      const response = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: models.claimed, messages, mycel: { include_evidence: true }, ...body }),
      });
      assert.equal(response.status, 200, await response.clone().text());
      return (await response.json()) as ChatWithEvidence;
    };

    /** The audit input for a served answer: its evidence plus the request in the wire form. */
    const auditInputOf = (
      answer: ChatWithEvidence,
      sampling: { max_tokens: number; temperature: number },
    ) => {
      const evidence = answer.mycel.evidence;
      assert.ok(evidence, `mycel.evidence is returned: ${JSON.stringify(answer.mycel)}`);
      return {
        ...evidence,
        request: {
          model_hash: modelHashToBytes32(models.claimed),
          kind: "chat",
          messages,
          max_tokens: sampling.max_tokens,
          temperature: sampling.temperature,
          top_p: 1,
          top_k: 0,
          seed: answer.mycel.seed,
          stop: [],
        },
      };
    };

    for (const temperature of [0, 0.8]) {
      it(`an answer at temperature ${temperature} passes mycel audit`, async () => {
        const sampling = { max_tokens: 40, temperature };
        const answer = await chat(sampling);
        const evidence = answer.mycel.evidence as Evidence;
        assert.equal(
          evidence.modelHash,
          modelHashToBytes32(models.claimed),
          "evidence.modelHash is 0x-bytes32",
        );
        assert.equal(
          evidence.promptTokens.length,
          answer.usage.prompt_tokens,
          "prompt tokens match the usage",
        );
        assert.equal(
          evidence.outputTokens.length,
          answer.usage.completion_tokens,
          "output tokens match the usage",
        );
        assert.equal(evidence.finishReason, answer.choices[0]?.finish_reason, "the finish reason matches");
        assert.equal(typeof answer.mycel.seed, "number", "mycel.seed is returned");
        const input = auditInputOf(answer, sampling);
        assert.deepEqual(
          (evidence as unknown as { request: unknown }).request,
          input.request,
          "mycel.evidence carries the request in its wire form",
        );
        const run = await audit(await writeInput(`served-${temperature}.json`, input));
        assert.equal(run.code, 0, `exit 0: ${run.stdout}${run.stderr}`);
        assert.equal(run.verdict?.verdict, "pass", run.stdout);
        const asIs = await audit(await writeInput(`served-as-is-${temperature}.json`, evidence));
        assert.equal(asIs.code, 0, `mycel.evidence audits as it is: ${asIs.stdout}${asIs.stderr}`);
      });
    }

    it("a whole saved chat answer audits as it is; a tampered one fails with exit 1", async () => {
      const answer = await chat({ max_tokens: 40, temperature: 0.8 });
      const run = await audit(await writeInput("served-answer.json", answer));
      assert.equal(run.code, 0, `the whole answer audits: ${run.stdout}${run.stderr}`);
      assert.equal(run.verdict?.verdict, "pass", run.stdout);
      assert.equal(run.verdict?.metrics.outputTokens, answer.usage.completion_tokens, "metrics.outputTokens");
      assert.equal(run.verdict?.metrics.promptTokens, answer.usage.prompt_tokens, "metrics.promptTokens");
      const evidence = answer.mycel.evidence as Evidence & { request: AuditInput["request"] };
      const tampered = { ...answer, mycel: { ...answer.mycel, evidence: withChangedPrompt(evidence) } };
      const failed = await audit(await writeInput("served-answer-tampered.json", tampered));
      assert.equal(failed.code, 1, `exit 1: ${failed.stdout}${failed.stderr}`);
      assert.equal(failed.verdict?.verdict, "fail", failed.stdout);
      assert.deepEqual(
        failed.verdict?.reasons.map((reason) => reason.code),
        ["prompt_mismatch"],
        "the changed prompt, and nothing else",
      );
    });

    it("a whole saved text completion answer audits as it is", async () => {
      const response = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: models.claimed,
          prompt: "Once upon a time",
          max_tokens: 24,
          temperature: 0,
          mycel: { include_evidence: true },
        }),
      });
      assert.equal(response.status, 200, await response.clone().text());
      const answer = (await response.json()) as { object: string; mycel: { evidence?: Evidence } };
      assert.equal(answer.object, "text_completion");
      assert.ok(answer.mycel.evidence, "mycel.evidence is returned");
      const run = await audit(await writeInput("served-text-answer.json", answer));
      assert.equal(run.code, 0, `exit 0: ${run.stdout}${run.stderr}`);
      assert.equal(run.verdict?.verdict, "pass", run.stdout);
    });

    it("streams the same evidence on the last event, which audits as it is, and omits it unless asked", async () => {
      const sampling = { max_tokens: 24, temperature: 0 };
      const plain = await chat(sampling);
      const response = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: models.claimed,
          messages,
          mycel: { include_evidence: true },
          stream: true,
          ...sampling,
        }),
      });
      assert.equal(response.status, 200);
      const events = (await response.text())
        .split("\n\n")
        .filter((event) => event.startsWith("data: ") && event !== "data: [DONE]")
        .map((event) => JSON.parse(event.slice(6)) as Partial<ChatWithEvidence>);
      const last = events.findLast((event) => event.mycel)?.mycel;
      const withoutRequest = (evidence: unknown) => {
        const { request: _request, ...rest } = evidence as Record<string, unknown>;
        return rest;
      };
      assert.deepEqual(
        withoutRequest(last?.evidence),
        withoutRequest(plain.mycel.evidence),
        "greedy: the streamed evidence equals the plain one (but for the request's random seed)",
      );
      assert.ok(last?.evidence, "the last event carries mycel.evidence");
      assert.equal(
        (last.evidence as unknown as { request: { seed: number } }).request.seed,
        (last as unknown as { seed: number }).seed,
        "the evidence's request carries the seed that was used",
      );
      const lastEvent = events.findLast((event) => event.mycel);
      const run = await audit(await writeInput("served-last-event.json", lastEvent));
      assert.equal(run.code, 0, `the last event's JSON audits as it is: ${run.stdout}${run.stderr}`);
      assert.equal(run.verdict?.verdict, "pass", run.stdout);
      const without = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: models.claimed, messages, ...sampling }),
      });
      const body = (await without.json()) as ChatWithEvidence;
      assert.equal(body.mycel.evidence, undefined, "no evidence unless include_evidence");
    });
  });
});
