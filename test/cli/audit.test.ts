import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type AuditInput, type Evidence, modelHashToBytes32 } from "../../src/protocol/index.ts";
import type { AuditVerdict } from "../../src/verify/index.ts";
import {
  addCheatModels,
  type CheatModels,
  cheatEngine,
  cheatingAnswer,
  fixtureRequest,
  honestAnswer,
} from "../fixtures/cheats.ts";
import { runMycel, type ServeProcess, startMycelServer, temporaryHome } from "../helpers.ts";

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

  const mycel = (args: string[]) => runMycel(args, { home: directory.home });
  const writeInput = async (name: string, value: unknown) => {
    const path = join(inputs, name);
    await writeFile(path, typeof value === "string" ? value : JSON.stringify(value));
    return path;
  };
  /** Runs `mycel audit --input <path>` and parses the verdict it prints. */
  const audit = async (path: string) => {
    const run = await mycel(["audit", "--input", path, "--threads", "1"]);
    let verdict: AuditVerdict | undefined;
    try {
      verdict = JSON.parse(run.stdout) as AuditVerdict;
    } catch {
      verdict = undefined;
    }
    return { ...run, verdict };
  };

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

    it("streams the same evidence on the last event, and omits it unless asked", async () => {
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
