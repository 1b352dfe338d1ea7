/**
 * Ollama's API of `mycel serve`, end to end: a real `mycel serve` process with a tiny test model, driven by Ollama's
 * own npm client (and raw fetch for the NDJSON bytes): list, show, ps, version, chat and generate (streamed and
 * not, raw and templated, equal to the OpenAI side's answers), structured output (`format`), penalties and min_p,
 * logprobs, embeddings (/api/embed and /api/embeddings, equal to /v1/embeddings'), refused fields, unknown models,
 * client aborts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Ollama } from "ollama";
import { runMycel, type ServeProcess, startMycelServer, temporaryHome } from "../helpers.ts";

const modelName = "mycel-test-tiny-s1-f32";
/** The gpt2-tokenizer test model: its chat template shows tools and takes `<tool_call>` blocks. */
const toolModelName = "mycel-test-tiny-gpt2-s1-f32";
const messages = [{ role: "user", content: "Say something about fungi." }];

/** The wire request an answer's evidence carries (`mycel.include_evidence`): what was generated, as hashed. */
type EvidenceRequest = Record<string, unknown>;
const evidenceRequestOf = (answer: unknown): EvidenceRequest =>
  (answer as { mycel: { evidence: { request: EvidenceRequest } } }).mycel.evidence.request;
/** A request for Ollama's client with Mycel's `include_evidence` option, which the client sends as it is. */
const withEvidence = <T extends object>(request: T): T => ({ ...request, mycel: { include_evidence: true } });

/** A schema a random-weight model cannot fill forever: an enum and a boolean, nothing free. */
const mushroomSchema = {
  type: "object",
  properties: {
    kind: { type: "string", enum: ["cap", "shelf", "puffball"] },
    edible: { type: "boolean" },
  },
  required: ["kind", "edible"],
  additionalProperties: false,
};

/** Whether a value follows {@link mushroomSchema}. */
function isMushroom(value: unknown): boolean {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const record = value as Record<string, unknown>;
  return (
    Object.keys(record).sort().join(",") === "edible,kind" &&
    ["cap", "shelf", "puffball"].includes(String(record.kind)) &&
    typeof record.edible === "boolean"
  );
}

type StatusError = Error & { status_code?: number; error?: string };

/** Runs `action`, which must fail with an Ollama ResponseError, and returns the error. */
async function responseError(action: () => Promise<unknown>): Promise<StatusError> {
  try {
    await action();
  } catch (error) {
    assert.equal((error as Error).name, "ResponseError", String(error));
    return error as StatusError;
  }
  assert.fail("the request succeeded");
}

describe("Ollama's API (a real `mycel serve` process, Ollama's own npm client)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let server: ServeProcess;
  let ollama: Ollama;

  before(async () => {
    directory = await temporaryHome("mycel-ollama-");
    const made = await runMycel(["model", "make-test", "--size", "tiny", "--seed", "1"], {
      home: directory.home,
    });
    assert.equal(made.code, 0, made.stderr);
    const toolModel = await runMycel(
      ["model", "make-test", "--size", "tiny", "--seed", "1", "--tokenizer", "gpt2"],
      { home: directory.home },
    );
    assert.equal(toolModel.code, 0, toolModel.stderr);
    server = await startMycelServer(
      [
        "serve",
        "--model",
        modelName,
        "--model",
        toolModelName,
        "--port",
        "0",
        "--parallelism",
        "1",
        "--max-queue",
        "4",
      ],
      { home: directory.home },
    );
    ollama = new Ollama({ host: server.url });
  });
  after(async () => {
    const code = await server?.stop();
    assert.equal(code, 0, "the server exits cleanly on SIGTERM");
    await directory?.remove();
  });

  const openAi = async (path: string, body: Record<string, unknown>) => {
    const response = await fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      // Ollama's default repeat_penalty, which the Ollama requests below get by leaving it out.
      body: JSON.stringify({ model: modelName, temperature: 0, repeat_penalty: 1.1, ...body }),
    });
    assert.equal(response.status, 200);
    const answer = (await response.json()) as {
      choices: { message?: { content: string }; text?: string; logprobs?: unknown }[];
    };
    lastOpenAiLogprobs = answer.choices[0]?.logprobs;
    return answer.choices[0]?.message?.content ?? answer.choices[0]?.text ?? "";
  };
  let lastOpenAiLogprobs: unknown;

  it("lists the model (tags, ps), shows it and says its version", async () => {
    const { models } = await ollama.list();
    assert.deepEqual(models.map((model) => model.name).sort(), [modelName, toolModelName].sort());
    const tag = models.find((model) => model.name === modelName);
    assert.equal(tag?.name, modelName);
    assert.equal(tag?.model, modelName);
    assert.match(tag?.digest ?? "", /^[0-9a-f]{64}$/);
    assert.ok((tag?.size ?? 0) > 1000, "the file's size, from the store");
    assert.ok(!Number.isNaN(new Date(tag?.modified_at ?? "").getTime()));
    assert.equal(tag?.details.format, "gguf");
    assert.equal(tag?.details.family, "llama");
    assert.match(tag?.details.parameter_size ?? "", /^\d+(\.\d+)?[KMB]?$/);
    assert.equal(tag?.details.quantization_level, "F32");

    const running = await ollama.ps();
    assert.deepEqual(
      running.models.map((model) => model.digest).sort(),
      models.map((model) => model.digest).sort(),
    );
    assert.ok(new Date(running.models[0]?.expires_at ?? 0).getTime() > Date.now());

    const shown = await ollama.show({ model: modelName });
    // Ollama's names for what the model does here: chat and generate, and embeddings (Mycel's under mycel).
    assert.deepEqual(shown.capabilities, ["completion", "embedding"]);
    assert.ok(
      ((shown as unknown as { mycel: { capabilities: string[] } }).mycel.capabilities ?? []).includes(
        "embeddings",
      ),
    );
    assert.equal(shown.details.family, "llama");
    const info = shown.model_info as unknown as Record<string, unknown>;
    assert.equal(info["general.architecture"], "llama");
    assert.ok(Number(info["llama.context_length"]) > 0, JSON.stringify(info));
    assert.match(shown.template, /\S/, "the GGUF's chat template");
    // Older clients send `name`; Ollama's default tag `:latest` finds the model too.
    const byName = await fetch(`${server.url}/api/show`, {
      method: "POST",
      body: JSON.stringify({ name: `${modelName}:latest` }),
    });
    assert.equal(byName.status, 200);

    const { version } = await ollama.version();
    assert.match(version, /^\d+\.\d+\.\d+$/);
  });

  it("chats, streamed and not, as /v1/chat/completions answers the same request", async () => {
    const options = { temperature: 0, num_predict: 24 };
    const plain = await ollama.chat({ model: modelName, messages, options });
    assert.equal(plain.done, true);
    assert.equal(plain.done_reason, "length");
    assert.equal(plain.message.role, "assistant");
    assert.equal(plain.eval_count, 24);
    assert.ok(plain.prompt_eval_count > 5);
    assert.ok(plain.total_duration >= plain.eval_duration && plain.eval_duration > 0);
    assert.equal(plain.load_duration, 0);
    assert.equal(plain.message.content, await openAi("/v1/chat/completions", { messages, max_tokens: 24 }));

    const stream = await ollama.chat({ model: modelName, messages, options, stream: true });
    const parts: string[] = [];
    let last: typeof plain | undefined;
    for await (const chunk of stream) {
      parts.push(chunk.message.content);
      last = chunk;
    }
    assert.ok(parts.length >= 3, "the answer streams in several objects");
    assert.equal(parts.join(""), plain.message.content);
    assert.equal(last?.done, true);
    assert.equal(last?.done_reason, "length");
    assert.equal(last?.message.content, "", "the final object carries the statistics, no text");
    assert.equal(last?.eval_count, 24);
    assert.ok((last?.prompt_eval_duration ?? 0) > 0);
  });

  it("takes tools and a tool round trip as /v1/ does: the same request and prompt; tools listed by /api/show", async () => {
    const weather = {
      type: "function",
      function: {
        name: "get_weather",
        description: "The weather in a city",
        parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
      },
    };
    const shown = await ollama.show({ model: toolModelName });
    assert.deepEqual(shown.capabilities, ["completion", "tools", "embedding"]);
    const options = { temperature: 0, num_predict: 6, seed: 5 };
    // Ollama has no tool_choice: the tools go to the model, which decides ("auto", no grammar).
    const first = await ollama.chat(
      withEvidence({ model: toolModelName, messages, tools: [weather], options, stream: false }),
    );
    const firstRequest = evidenceRequestOf(first);
    assert.deepEqual(firstRequest.tools, [weather], "the request the receipt hashes carries the tools");
    assert.equal(firstRequest.tool_choice, undefined);
    assert.equal(first.message.role, "assistant");

    // A round trip: the assistant's call (arguments an object, no id) and the tool's answer (tool_name).
    const conversation = [
      ...messages,
      {
        role: "assistant",
        content: "",
        tool_calls: [{ function: { name: "get_weather", arguments: { city: "Paris" } } }],
      },
      { role: "tool", content: "22 C, light wind", tool_name: "get_weather" },
    ];
    const answer = await ollama.chat(
      withEvidence({
        model: toolModelName,
        messages: conversation,
        tools: [weather],
        options,
        stream: false,
      }),
    );
    const request = evidenceRequestOf(answer);
    assert.deepEqual(request.messages, [
      ...messages,
      {
        role: "assistant",
        content: "",
        tool_calls: [
          {
            id: "call_1_0",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: "tool", content: "22 C, light wind", tool_call_id: "call_1_0", name: "get_weather" },
    ]);
    // /v1/ with the same conversation (Ollama's defaults spelled out) generates the very same request and prompt.
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: toolModelName,
        messages: request.messages,
        tools: [weather],
        temperature: 0,
        top_p: 0.9,
        top_k: 40,
        repeat_penalty: 1.1,
        seed: 5,
        max_tokens: 6,
        mycel: { include_evidence: true },
      }),
    });
    assert.equal(response.status, 200);
    const openAiAnswer = (await response.json()) as {
      choices: { message: { content: string | null; tool_calls?: unknown[] } }[];
      mycel: { evidence: { request: EvidenceRequest; promptTokens: number[] } };
    };
    assert.deepEqual(request, openAiAnswer.mycel.evidence.request);
    const ollamaEvidence = (answer as unknown as { mycel: { evidence: { promptTokens: number[] } } }).mycel
      .evidence;
    assert.deepEqual(ollamaEvidence.promptTokens, openAiAnswer.mycel.evidence.promptTokens);
    assert.ok(ollamaEvidence.promptTokens.length > (first as unknown as typeof answer).prompt_eval_count);
    const openAiMessage = openAiAnswer.choices[0]?.message;
    assert.equal(answer.message.content, openAiMessage?.content ?? "");
    assert.equal(answer.message.tool_calls?.length ?? 0, openAiMessage?.tool_calls?.length ?? 0);

    // Streamed: the same answer, in NDJSON objects.
    const stream = await ollama.chat({
      model: toolModelName,
      messages: conversation,
      tools: [weather],
      options,
      stream: true,
    });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.message.content;
    assert.equal(streamed, answer.message.content);

    // A model whose template has no tool-call format, and tools with `format`, are 400s.
    const noFormat = await responseError(() => ollama.chat({ model: modelName, messages, tools: [weather] }));
    assert.equal(noFormat.status_code, 400);
    assert.match(noFormat.message, /cannot call tools/);
    const withFormat = await responseError(() =>
      ollama.chat({ model: toolModelName, messages, tools: [weather], format: "json" }),
    );
    assert.equal(withFormat.status_code, 400);
    assert.match(withFormat.message, /format cannot be combined with tools/);
  });

  it("generates: templated as one user turn (with system), raw as a text completion", async () => {
    const options = { temperature: 0, num_predict: 16 };
    const prompt = "Tell me about mushrooms.";
    const system = "You answer briefly.";
    const templated = await ollama.generate({ model: modelName, prompt, system, options });
    assert.equal(templated.done_reason, "length");
    assert.equal(
      templated.response,
      await openAi("/v1/chat/completions", {
        messages: [
          { role: "system", content: system },
          { role: "user", content: prompt },
        ],
        max_tokens: 16,
      }),
    );
    const raw = await ollama.generate({ model: modelName, prompt, raw: true, options });
    assert.equal(raw.response, await openAi("/v1/completions", { prompt, max_tokens: 16 }));
    assert.notEqual(raw.response, templated.response);

    let streamed = "";
    for await (const chunk of await ollama.generate({
      model: modelName,
      prompt,
      raw: true,
      options,
      stream: true,
    }))
      streamed += chunk.response;
    assert.equal(streamed, raw.response);
    // No prompt: Ollama's "load the model" request.
    const loaded = await ollama.generate({ model: modelName, prompt: "" });
    assert.equal(loaded.done_reason, "load");
  });

  it("streams NDJSON by default: one object per line, done:false then a final done:true", async () => {
    const response = await fetch(`${server.url}/api/chat`, {
      method: "POST",
      body: JSON.stringify({
        model: modelName,
        messages,
        options: { num_predict: 8, seed: 7 },
        mycel: { include_evidence: true },
      }),
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/x-ndjson");
    const text = await response.text();
    assert.ok(text.endsWith("}\n"), "every object ends its line");
    const lines = text.slice(0, -1).split("\n");
    const objects = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(objects.length >= 2);
    for (const object of objects.slice(0, -1)) {
      assert.equal(object.done, false);
      assert.equal(object.model, modelName);
      assert.ok(!Number.isNaN(Date.parse(String(object.created_at))));
    }
    const final = objects.at(-1) as Record<string, unknown> & { mycel: { seed: number } };
    assert.equal(final.done, true);
    assert.equal(final.done_reason, "length");
    assert.equal(final.eval_count, 8);
    for (const field of ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"])
      assert.equal(typeof final[field], "number", field);
    assert.equal(final.mycel.seed, 7);
    // Ollama's defaults, on the request as generated and hashed into the receipt.
    const request = evidenceRequestOf(final);
    assert.deepEqual(
      [request.temperature, request.top_p, request.top_k, request.repeat_penalty],
      [0.8, 0.9, 40, 1.1],
    );
    assert.equal("logprobs" in final, false, "no logprobs unless asked");
  });

  it("refuses what it does not implement with a 400 naming it, and accepts the fields safe to ignore", async () => {
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ options: { min_p: 1.5 } }, /invalid value for 'options\.min_p'/],
      [{ options: { repeat_penalty: 0 } }, /invalid value for 'options\.repeat_penalty'/],
      [{ options: { presence_penalty: 2.5 } }, /invalid value for 'options\.presence_penalty'/],
      [{ options: { frequency_penalty: -3 } }, /invalid value for 'options\.frequency_penalty'/],
      [
        { options: { repeat_last_n: 128 } },
        /'options\.repeat_last_n'.*fixed window of the last 64 output tokens/,
      ],
      [{ options: { mirostat: 2 } }, /'options\.mirostat' is not supported: mirostat/],
      [{ options: { flash: true } }, /unsupported parameter 'options\.flash'/],
      [{ format: "yaml" }, /'format'.*"json" or a JSON schema/],
      [{ format: { type: "string", pattern: "^a+$" } }, /format cannot be enforced: the keyword "pattern"/],
      [{ top_logprobs: 3 }, /top_logprobs needs logprobs: true/],
      [{ think: true }, /'think' is not supported/],
      [{ messages: [{ role: "user", content: "hi", images: ["aGk="] }] }, /'messages\.0\.images'/],
      [{ options: { temperature: 3 } }, /'options\.temperature'/],
    ];
    for (const [fields, message] of refusals) {
      const error = await responseError(() =>
        ollama.chat({ model: modelName, messages, ...fields } as Parameters<Ollama["chat"]>[0]),
      );
      assert.equal(error.status_code, 400, JSON.stringify(fields));
      assert.match(error.message, message);
    }
    const rawWithSystem = await responseError(() =>
      ollama.generate({ model: modelName, prompt: "hi", raw: true, system: "be brief" }),
    );
    assert.match(rawWithSystem.message, /'system' needs the chat template/);
    // Neutral values of what is not implemented, and the fields ignored by design, are accepted.
    const accepted = await ollama.chat({
      model: modelName,
      messages,
      keep_alive: "5m",
      format: "",
      logprobs: false,
      options: { num_predict: 2, num_ctx: 8192, num_thread: 4, repeat_last_n: 64, penalize_newline: true },
    });
    assert.equal(accepted.eval_count, 2);
  });

  it("takes min_p and the penalties as /v1/ does, and puts them on the request it generates", async () => {
    const options = {
      temperature: 0,
      num_predict: 24,
      min_p: 0.05,
      repeat_penalty: 1.5,
      presence_penalty: 0.5,
    };
    const answer = await ollama.chat(withEvidence({ model: modelName, messages, options }));
    assert.equal(answer.eval_count, 24);
    const request = evidenceRequestOf(answer);
    assert.deepEqual(
      [request.min_p, request.repeat_penalty, request.presence_penalty, request.frequency_penalty],
      [0.05, 1.5, 0.5, undefined],
    );
    assert.equal(
      answer.message.content,
      await openAi("/v1/chat/completions", {
        messages,
        max_tokens: 24,
        min_p: 0.05,
        repeat_penalty: 1.5,
        presence_penalty: 0.5,
      }),
    );
    // repeat_last_n 0: no penalty at all (not even Ollama's default 1.1).
    const unpenalized = await ollama.generate(
      withEvidence({
        model: modelName,
        prompt: "Hi",
        options: { num_predict: 4, repeat_last_n: 0, frequency_penalty: 0 },
      }),
    );
    const plain = evidenceRequestOf(unpenalized);
    assert.equal("repeat_penalty" in plain || "frequency_penalty" in plain, false, JSON.stringify(plain));
  });

  it("answers a JSON schema `format` with JSON that parses and follows it, streamed and not", async () => {
    const request = {
      model: modelName,
      messages: [{ role: "user", content: "Describe a mushroom as JSON." }],
      format: mushroomSchema,
      options: { temperature: 0, num_predict: 64 },
    };
    const answer = await ollama.chat(withEvidence(request));
    // The grammar (node-llama-cpp's) ends the object with newlines a random-weight model may pad up to the
    // limit: the object is complete well before 64 tokens, and JSON.parse takes the trailing whitespace.
    const parsed: unknown = JSON.parse(answer.message.content);
    assert.ok(isMushroom(parsed), answer.message.content);
    assert.deepEqual(evidenceRequestOf(answer).response_format, {
      type: "json_schema",
      json_schema: { name: "ollama_format", schema: mushroomSchema, strict: true },
    });
    let streamed = "";
    for await (const chunk of await ollama.chat({ ...request, stream: true }))
      streamed += chunk.message.content;
    assert.equal(streamed, answer.message.content);
    // Sampled (several seeds): every answer follows the schema.
    for (const seed of [1, 2, 3]) {
      const sampled = await ollama.generate({
        model: modelName,
        prompt: "A mushroom, as JSON:",
        format: mushroomSchema,
        options: { temperature: 1, seed, num_predict: 64 },
      });
      const text = sampled.response ?? "";
      assert.ok(isMushroom(JSON.parse(text)), text);
    }
  });

  it('answers format "json" with a JSON object', async () => {
    const answer = await ollama.generate(
      withEvidence({
        model: modelName,
        prompt: "Some JSON please.",
        format: "json",
        options: { temperature: 0, num_predict: 12 },
      }),
    );
    assert.deepEqual(evidenceRequestOf(answer).response_format, { type: "json_object" });
    const text = answer.response ?? "";
    assert.match(text, /^\s*\{/, "an object, from its first character");
    // Free strings let a random-weight model go on: only a finished answer must parse whole.
    if (answer.done_reason === "stop") {
      const parsed: unknown = JSON.parse(text);
      assert.ok(parsed !== null && typeof parsed === "object" && !Array.isArray(parsed), text);
    } else assert.equal(answer.eval_count, 12);
  });

  it("returns logprobs in Ollama's shape, the same as /v1/'s, streamed in the final object", async () => {
    // No penalty (Ollama's default 1.1 is one): at temperature 0 each token is then the model's most likely.
    const options = { temperature: 0, num_predict: 6, repeat_penalty: 1 };
    const answer = await ollama.chat({
      model: modelName,
      messages,
      options,
      logprobs: true,
      top_logprobs: 2,
    });
    const logprobs = answer.logprobs ?? [];
    assert.equal(logprobs.length, 6);
    const bytes: number[] = [];
    for (const entry of logprobs as ((typeof logprobs)[number] & { bytes: number[] })[]) {
      assert.ok(entry.logprob <= 0, JSON.stringify(entry));
      assert.equal(entry.top_logprobs?.length, 2);
      assert.equal(entry.top_logprobs?.[0]?.token, entry.token, "at temperature 0: the most likely");
      bytes.push(...entry.bytes);
    }
    assert.equal(Buffer.from(bytes).toString("utf8"), answer.message.content);
    await openAi("/v1/chat/completions", {
      messages,
      max_tokens: 6,
      repeat_penalty: 1,
      logprobs: true,
      top_logprobs: 2,
    });
    const openAiLogprobs = (lastOpenAiLogprobs as { content: { logprob: number }[] }).content;
    assert.deepEqual(
      logprobs.map((entry) => entry.logprob),
      openAiLogprobs.map((entry) => entry.logprob),
    );
    const chunks = [];
    for await (const chunk of await ollama.chat({
      model: modelName,
      messages,
      options,
      logprobs: true,
      stream: true,
    }))
      chunks.push(chunk);
    assert.deepEqual(
      chunks.at(-1)?.logprobs?.map((entry) => entry.logprob),
      logprobs.map((entry) => entry.logprob),
    );
    assert.deepEqual(chunks.at(-1)?.logprobs?.[0]?.top_logprobs, [], "top_logprobs 0: none");
  });

  it("embeds as /v1/embeddings does, on /api/embed and the older /api/embeddings", async () => {
    const inputs = ["Mycelium connects trees.", "Spores travel far."];
    const response = await fetch(`${server.url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: modelName, input: inputs }),
    });
    assert.equal(response.status, 200);
    const reference = (await response.json()) as {
      data: { embedding: number[] }[];
      usage: { prompt_tokens: number };
      mycel: { model_hash: string };
    };
    const expected = reference.data.map((entry) => entry.embedding);
    const assertClose = (actual: number[] | undefined, wanted: number[] | undefined, what: string) => {
      assert.equal(actual?.length, 64, what);
      assert.equal(actual?.length, wanted?.length, what);
      for (const [index, value] of (actual ?? []).entries())
        assert.ok(Math.abs(value - (wanted?.[index] ?? Number.NaN)) <= 1e-6, `${what}: value ${index}`);
    };

    const answer = await ollama.embed({ model: modelName, input: inputs });
    assert.equal(answer.model, modelName);
    assert.equal(answer.embeddings.length, 2);
    for (const [index, vector] of answer.embeddings.entries())
      assertClose(vector, expected[index], `input ${index}`);
    assert.notDeepEqual(answer.embeddings[0], answer.embeddings[1], "two inputs, two vectors");
    assert.equal(answer.prompt_eval_count, reference.usage.prompt_tokens);
    assert.ok(answer.total_duration > 0);
    assert.equal(answer.load_duration, 0);
    const mycel = (answer as typeof answer & { mycel: { model_hash: string } }).mycel;
    assert.equal(mycel.model_hash, reference.mycel.model_hash);

    // One string, with the fields that change nothing here: truncate false (Mycel never truncates), the model's
    // own dimensions, keep_alive, and options that say where the model runs.
    const one = await ollama.embed({
      model: modelName,
      input: inputs[1] as string,
      truncate: false,
      dimensions: 64,
      keep_alive: "5m",
      options: { num_ctx: 4096, num_thread: 2 },
    });
    assertClose(one.embeddings[0], expected[1], "a string input");
    const legacy = await ollama.embeddings({ model: `${modelName}:latest`, prompt: inputs[0] as string });
    assertClose(legacy.embedding, expected[0], "/api/embeddings");
    // No input is Ollama's "load the model" request, answered at once.
    assert.deepEqual((await ollama.embed({ model: modelName, input: [] })).embeddings, []);
    assert.deepEqual((await ollama.embeddings({ model: modelName, prompt: "" })).embedding, []);
  });

  it("refuses on the embeddings routes what they do not implement, and an input too long, with a 400", async () => {
    const long = "word ".repeat(5000);
    const refusals: [Record<string, unknown>, RegExp][] = [
      [
        { options: { temperature: 0.5 } },
        /'options\.temperature' is not supported: an embedding is not sampled/,
      ],
      [{ options: { seed: 1 } }, /'options\.seed'/],
      [{ options: { flash: true } }, /unsupported parameter 'options\.flash'/],
      [{ format: "json" }, /'format'/],
      [{ input: ["a", ""] }, /invalid value for 'input\.1'/],
      [
        { input: Array(257).fill("a") },
        /input must be a string or an array of at most 256 non-empty strings/,
      ],
      [{ dimensions: 32 }, /dimensions 32 is not served: this model's embeddings have 64 dimensions/],
      [{ input: long }, /input 0 has \d+ tokens.*Mycel never truncates/],
      [{ input: ["short", long], truncate: false }, /input 1 has \d+ tokens/],
    ];
    for (const [fields, message] of refusals) {
      const error = await responseError(() =>
        ollama.embed({ model: modelName, input: "hi", ...fields } as Parameters<Ollama["embed"]>[0]),
      );
      assert.equal(error.status_code, 400, JSON.stringify(fields).slice(0, 80));
      assert.match(error.message, message);
    }
    const untruncated = await responseError(() =>
      ollama.embed({ model: modelName, input: ["short", long], truncate: false }),
    );
    assert.doesNotMatch(untruncated.message, /truncate/, "truncate: false asked for the refusal");
    for (const [fields, message] of [
      [{ options: { top_k: 3 } }, /'options\.top_k'/],
      [{ input: "hi" }, /unsupported parameter 'input'/],
      [{ prompt: long }, /the prompt has \d+ tokens/],
    ] as const) {
      const error = await responseError(() =>
        ollama.embeddings({ model: modelName, prompt: "hi", ...fields } as Parameters<
          Ollama["embeddings"]
        >[0]),
      );
      assert.equal(error.status_code, 400, JSON.stringify(fields).slice(0, 80));
      assert.match(error.message, message);
    }
    const unknown = await responseError(() => ollama.embed({ model: "nope", input: "hi" }));
    assert.equal(unknown.status_code, 404);
    assert.match(unknown.message, /^model 'nope' not found/);
  });

  it("answers an unknown model with Ollama's 404, and malformed JSON with a 400", async () => {
    const unknown = await responseError(() => ollama.chat({ model: "nope", messages }));
    assert.equal(unknown.status_code, 404);
    assert.match(unknown.message, /^model 'nope' not found/);
    const show = await responseError(() => ollama.show({ model: "nope" }));
    assert.equal(show.status_code, 404);
    const malformed = await fetch(`${server.url}/api/generate`, { method: "POST", body: "{not json" });
    assert.equal(malformed.status, 400);
    const body = (await malformed.json()) as { error: unknown };
    assert.match(String(body.error), /not valid JSON/);
    const route = await fetch(`${server.url}/api/pull`, { method: "POST", body: "{}" });
    assert.equal(route.status, 404);
    assert.equal(typeof ((await route.json()) as { error: unknown }).error, "string");
  });

  it("stops generating when the client aborts the stream", async () => {
    const from = server.output().length;
    const stream = await ollama.generate({
      model: modelName,
      prompt: "Tell me a long story.",
      stream: true,
      options: { num_predict: 1900, temperature: 0 },
    });
    const abortedAt = performance.now();
    for await (const chunk of stream) {
      assert.equal(chunk.done, false);
      stream.abort();
      break;
    }
    const cancelled = await server.waitForOutput(
      /generation cancelled: client disconnected.*completionTokens[=:" ]+(\d+)/,
      { from, timeoutMs: 10_000 },
    );
    assert.ok(Number(cancelled[1]) < 1900, `stopped after ${cancelled[1]} tokens`);
    assert.ok(performance.now() - abortedAt < 5_000, "stopped quickly, not after 1900 tokens");
    // The one sequence is free again: the next request is served.
    const next = await ollama.generate({ model: modelName, prompt: "hi", options: { num_predict: 3 } });
    assert.equal(next.eval_count, 3);
  });
});
