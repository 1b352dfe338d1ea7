import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { runMycel, type ServeProcess, startMycelServer, temporaryHome, waitFor } from "../helpers.ts";

const modelName = "mycel-test-tiny-s1-f32";
const maxBody = 64 * 1024;

describe("OpenAI-compatible API (a real `mycel serve` process, the official openai client)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let server: ServeProcess;
  let client: OpenAI;

  before(async () => {
    directory = await temporaryHome("mycel-api-");
    const made = await runMycel(["model", "make-test", "--size", "tiny", "--seed", "1"], {
      home: directory.home,
    });
    assert.equal(made.code, 0, made.stderr);
    server = await startMycelServer(
      [
        "serve",
        "--model",
        modelName,
        "--port",
        "0",
        "--parallelism",
        "1",
        "--max-queue",
        "1",
        "--max-body",
        String(maxBody),
      ],
      { home: directory.home },
    );
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "not-needed", maxRetries: 0 });
  });
  after(async () => {
    const code = await server?.stop();
    assert.equal(code, 0, "the server exits cleanly on SIGTERM");
    await directory.remove();
  });

  const messages = [{ role: "user" as const, content: "Say something about fungi." }];

  it("lists the served model", async () => {
    const list = await client.models.list();
    const ids = list.data.map((model) => model.id);
    assert.deepEqual(ids, [modelName]);
    const model = list.data[0] as unknown as { mycel: { hash: string } };
    assert.match(model.mycel.hash, /^[0-9a-f]{64}$/);
    const one = await client.models.retrieve(modelName);
    assert.equal(one.id, modelName);
  });

  it("answers a chat, and the reassembled stream equals the non-streamed greedy answer", async () => {
    const plain = await client.chat.completions.create({
      model: modelName,
      messages,
      max_tokens: 48,
      temperature: 0,
    });
    const answer = plain.choices[0]?.message.content ?? "";
    assert.equal(plain.object, "chat.completion");
    assert.equal(plain.choices[0]?.finish_reason, "length");
    assert.ok(answer.length > 0);
    assert.equal(plain.usage?.completion_tokens, 48);
    assert.ok((plain.usage?.prompt_tokens ?? 0) > 10);

    const stream = await client.chat.completions.create({
      model: modelName,
      messages,
      max_tokens: 48,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let role: string | undefined;
    let finishReason: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    const contents: string[] = [];
    for await (const chunk of stream) {
      assert.equal(chunk.object, "chat.completion.chunk");
      const choice = chunk.choices[0];
      if (choice) {
        role ??= choice.delta.role ?? undefined;
        text += choice.delta.content ?? "";
        if (choice.delta.content) contents.push(choice.delta.content);
        if (choice.finish_reason) finishReason = choice.finish_reason;
        assert.equal(chunk.usage ?? null, null, "only the last chunk carries usage");
      } else {
        usage = chunk.usage;
      }
    }
    assert.equal(role, "assistant");
    assert.equal(text, answer);
    assert.equal(finishReason, "length");
    assert.equal(usage?.completion_tokens, 48);
    assert.equal(usage?.prompt_tokens, plain.usage?.prompt_tokens);
    // The first token is sent at once, on its own (a byte-level test-model token is one character); faster
    // tokens after it share events, at most one per streamBatchIntervalMs.
    assert.ok(contents.length >= 2, "the answer streams in several events");
    assert.equal(contents[0]?.length, 1, "the first token goes out alone");
  });

  it("honours stop sequences and seeds through the API", async () => {
    const plain = await client.chat.completions.create({
      model: modelName,
      messages,
      max_tokens: 48,
      temperature: 0,
    });
    const answer = plain.choices[0]?.message.content ?? "";
    const stop = answer.slice(6, 8);
    const cut = answer.indexOf(stop);
    const stopped = await client.chat.completions.create({
      model: modelName,
      messages,
      max_tokens: 48,
      temperature: 0,
      stop: [stop],
    });
    assert.equal(stopped.choices[0]?.message.content, answer.slice(0, cut));
    assert.equal(stopped.choices[0]?.finish_reason, "stop");
    const sampled = () =>
      client.chat.completions.create({
        model: modelName,
        messages,
        max_tokens: 32,
        temperature: 0.9,
        seed: 42,
      });
    assert.equal(
      (await sampled()).choices[0]?.message.content,
      (await sampled()).choices[0]?.message.content,
    );
  });

  it("answers n choices, each its own generation with seed + index, streamed and not", async () => {
    const request = {
      model: modelName,
      messages: [{ role: "user" as const, content: "Tell me about mycelium." }],
      max_tokens: 12,
      temperature: 1,
      seed: 40,
    };
    const both = await client.chat.completions.create({ ...request, n: 2 });
    assert.deepEqual(
      both.choices.map((choice) => choice.index),
      [0, 1],
    );
    for (const [index, choice] of both.choices.entries()) {
      const alone = await client.chat.completions.create({ ...request, seed: 40 + index });
      assert.equal(
        choice.message.content,
        alone.choices[0]?.message.content,
        `choice ${index} is seed ${40 + index}`,
      );
    }
    assert.notEqual(both.choices[0]?.message.content, both.choices[1]?.message.content, "two draws");
    const completionTokens = both.choices.length * 12;
    assert.ok(
      (both.usage?.completion_tokens ?? 0) <= completionTokens && (both.usage?.completion_tokens ?? 0) > 12,
    );
    const mycel = (both as unknown as { mycel: { choices: { seed: number }[] } }).mycel;
    assert.deepEqual(
      mycel.choices.map((choice) => choice.seed),
      [40, 41],
      "every choice's mycel fields",
    );
    const stream = await client.chat.completions.create({ ...request, n: 2, stream: true });
    const texts = ["", ""];
    const finishes: (string | null)[] = [null, null];
    for await (const chunk of stream)
      for (const choice of chunk.choices) {
        texts[choice.index] += choice.delta.content ?? "";
        finishes[choice.index] = choice.finish_reason ?? finishes[choice.index] ?? null;
      }
    assert.deepEqual(
      texts,
      both.choices.map((choice) => choice.message.content),
      "streamed choices equal the non-streamed ones",
    );
    assert.deepEqual(
      finishes,
      both.choices.map((choice) => choice.finish_reason),
    );
  });

  it("serves /v1/completions, streamed and not", async () => {
    const plain = await client.completions.create({
      model: modelName,
      prompt: "Once upon a time",
      max_tokens: 20,
      temperature: 0,
    });
    assert.equal(plain.object, "text_completion");
    assert.equal(plain.usage?.completion_tokens, 20);
    const stream = await client.completions.create({
      model: modelName,
      prompt: "Once upon a time",
      max_tokens: 20,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    assert.equal(text, plain.choices[0]?.text);
    const defaults = await client.completions.create({ model: modelName, prompt: "x", temperature: 0 });
    assert.equal(defaults.usage?.completion_tokens, 16, "OpenAI's default max_tokens for completions");
  });

  it("answers GET /health", async () => {
    const response = await fetch(`${server.url}/health`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as {
      status: string;
      models: Array<{ name: string; slots: { total: number } }>;
    };
    assert.equal(body.status, "ok");
    assert.equal(body.models[0]?.name, modelName);
    assert.equal(body.models[0]?.slots.total, 1);
  });

  type BadCase = {
    name: string;
    method?: string;
    path?: string;
    body: string | undefined;
    status: number;
    code: string | null;
    param?: string | null;
    message: RegExp;
  };
  const chat = (fields: Record<string, unknown>) => JSON.stringify({ model: modelName, messages, ...fields });
  const badCases: BadCase[] = [
    {
      name: "malformed JSON",
      body: '{"model": ',
      status: 400,
      code: "invalid_json",
      message: /not valid JSON/,
    },
    { name: "empty body", body: "", status: 400, code: "invalid_json", message: /empty/ },
    { name: "a JSON array", body: "[]", status: 400, code: "invalid_type", message: /JSON object/ },
    {
      name: "missing messages",
      body: JSON.stringify({ model: modelName }),
      status: 400,
      code: "missing_required_parameter",
      param: "messages",
      message: /messages/,
    },
    {
      name: "missing model",
      body: JSON.stringify({ messages }),
      status: 400,
      code: "missing_required_parameter",
      param: "model",
      message: /model/,
    },
    {
      name: "mistyped messages",
      body: chat({ messages: "hi" }),
      status: 400,
      code: "invalid_type",
      param: "messages",
      message: /messages/,
    },
    {
      name: "empty messages",
      body: chat({ messages: [] }),
      status: 400,
      code: "invalid_value",
      param: "messages",
      message: /messages/,
    },
    {
      name: "unknown role",
      body: chat({ messages: [{ role: "wizard", content: "hi" }] }),
      status: 400,
      code: "invalid_value",
      param: "messages.0.role",
      message: /role/,
    },
    {
      name: "mistyped temperature",
      body: chat({ temperature: "hot" }),
      status: 400,
      code: "invalid_type",
      param: "temperature",
      message: /temperature/,
    },
    {
      name: "temperature out of range",
      body: chat({ temperature: 3 }),
      status: 400,
      code: "invalid_value",
      param: "temperature",
      message: /temperature/,
    },
    {
      name: "top_p out of range",
      body: chat({ top_p: 0 }),
      status: 400,
      code: "invalid_value",
      param: "top_p",
      message: /top_p/,
    },
    {
      name: "max_tokens of 0",
      body: chat({ max_tokens: 0 }),
      status: 400,
      code: "invalid_value",
      param: "max_tokens",
      message: /max_tokens/,
    },
    {
      name: "fractional max_tokens",
      body: chat({ max_tokens: 1.5 }),
      status: 400,
      code: "invalid_type",
      param: "max_tokens",
      message: /max_tokens/,
    },
    { name: "n of 5", body: chat({ n: 5 }), status: 400, code: "invalid_value", param: "n", message: /n/ },
    {
      name: "five stop sequences",
      body: chat({ stop: ["a", "b", "c", "d", "e"] }),
      status: 400,
      code: "invalid_value",
      param: "stop",
      message: /stop/,
    },
    {
      name: "tools for a model without a tool-call format",
      body: chat({ tools: [{ type: "function", function: { name: "f" } }] }),
      status: 400,
      code: "invalid_value",
      param: "tools",
      message: /cannot call tools: its chat template has no known tool-call format/,
    },
    {
      name: "a field Mycel does not implement",
      body: chat({ reasoning_effort: "high" }),
      status: 400,
      code: "unsupported_parameter",
      param: "reasoning_effort",
      message: /unsupported parameter 'reasoning_effort'.*refused rather than ignored/,
    },
    {
      name: "a logit_bias on a token outside the vocabulary",
      body: chat({ logit_bias: { "99999": 5 } }),
      status: 400,
      code: "invalid_value",
      param: "logit_bias",
      message: /token 99999, outside the vocabulary/,
    },
    {
      name: "a logit_bias over 100",
      body: chat({ logit_bias: { "65": 101 } }),
      status: 400,
      code: "invalid_value",
      param: "logit_bias.65",
      message: /logit_bias/,
    },
    {
      name: "top_logprobs without logprobs",
      body: chat({ top_logprobs: 3 }),
      status: 400,
      code: "invalid_value",
      param: "top_logprobs",
      message: /top_logprobs needs logprobs: true/,
    },
    {
      name: "a response_format type Mycel does not know",
      body: chat({ response_format: { type: "xml" } }),
      status: 400,
      code: "invalid_value",
      param: "response_format",
      message: /json_schema/,
    },
    {
      name: "a JSON schema that cannot be enforced",
      body: chat({
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", schema: { type: "no-such-type" } },
        },
      }),
      status: 400,
      code: "invalid_value",
      param: "response_format.json_schema.schema",
      message: /cannot be enforced/,
    },
    {
      name: "a required tool choice",
      body: chat({ tool_choice: "required" }),
      status: 400,
      code: "invalid_value",
      param: "tool_choice",
      message: /tool_choice/,
    },
    {
      name: "completions with a suffix",
      path: "/v1/completions",
      body: JSON.stringify({ model: modelName, prompt: "Hi", suffix: "end" }),
      status: 400,
      code: "invalid_value",
      param: "suffix",
      message: /suffix/,
    },
    {
      name: "completions with min_p over 1",
      path: "/v1/completions",
      body: JSON.stringify({ model: modelName, prompt: "Hi", min_p: 1.5 }),
      status: 400,
      code: "invalid_value",
      param: "min_p",
      message: /min_p/,
    },
    {
      name: "completions with a repeat_penalty of 0",
      path: "/v1/completions",
      body: JSON.stringify({ model: modelName, prompt: "Hi", repeat_penalty: 0 }),
      status: 400,
      code: "invalid_value",
      param: "repeat_penalty",
      message: /repeat_penalty/,
    },
    {
      name: "unknown model",
      body: JSON.stringify({ model: "no-such-model", messages }),
      status: 404,
      code: "model_not_found",
      param: "model",
      message: /no-such-model/,
    },
    {
      name: "a body over the limit",
      body: chat({ messages: [{ role: "user", content: "x".repeat(maxBody + 10) }] }),
      status: 413,
      code: "request_too_large",
      message: /larger than 65536 bytes/,
    },
    {
      name: "a prompt over the context window",
      body: chat({ messages: [{ role: "user", content: "y".repeat(3000) }] }),
      status: 400,
      code: "context_length_exceeded",
      message: /maximum context length is 2048 tokens/,
    },
    {
      name: "max_tokens over the context window",
      body: chat({ max_tokens: 5000 }),
      status: 400,
      code: "context_length_exceeded",
      message: /context length/,
    },
    {
      name: "completions with a token outside the vocabulary",
      path: "/v1/completions",
      body: JSON.stringify({ model: modelName, prompt: [1, 2, 99999] }),
      status: 400,
      code: "invalid_value",
      param: "prompt",
      message: /vocabulary/,
    },
    {
      name: "a wrong method",
      method: "GET",
      body: undefined,
      status: 405,
      code: "method_not_allowed",
      message: /POST/,
    },
    {
      name: "an unknown route",
      path: "/v1/nothing",
      body: "{}",
      status: 404,
      code: "not_found",
      message: /no route/,
    },
  ];

  it("accepts the fields that are safe to ignore, and neutral values of the ones it does not implement", async () => {
    for (const [path, body] of [
      [
        "/v1/chat/completions",
        chat({
          max_tokens: 2,
          user: "someone",
          store: false,
          metadata: { app: "test" },
          n: 1,
          presence_penalty: 0,
          frequency_penalty: 0,
          logit_bias: {},
          logprobs: false,
          top_logprobs: 0,
          tool_choice: "none",
          parallel_tool_calls: true,
          tools: [],
        }),
      ],
      [
        "/v1/completions",
        JSON.stringify({
          model: modelName,
          prompt: "Hi",
          max_tokens: 2,
          best_of: 1,
          logprobs: 0,
          suffix: "",
        }),
      ],
    ] as const) {
      const response = await fetch(`${server.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      assert.equal(response.status, 200, `${path}: ${await response.clone().text()}`);
      const answer = (await response.json()) as { usage: { completion_tokens: number } };
      assert.equal(answer.usage.completion_tokens, 2);
    }
  });

  for (const badCase of badCases) {
    it(`refuses ${badCase.name} with ${badCase.status}, and the next request succeeds`, async () => {
      const response = await fetch(`${server.url}${badCase.path ?? "/v1/chat/completions"}`, {
        method: badCase.method ?? "POST",
        headers: { "content-type": "application/json" },
        body: badCase.body,
      });
      assert.equal(response.status, badCase.status);
      assert.match(response.headers.get("content-type") ?? "", /application\/json/);
      const body = (await response.json()) as {
        error: { message: string; type: string; param: string | null; code: string | null };
      };
      assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
      assert.equal(body.error.code, badCase.code);
      assert.equal(body.error.type, "invalid_request_error");
      if (badCase.param !== undefined) assert.equal(body.error.param, badCase.param);
      assert.match(body.error.message, badCase.message);
      const next = await client.chat.completions.create({
        model: modelName,
        messages,
        max_tokens: 2,
        temperature: 0,
      });
      assert.equal(next.usage?.completion_tokens, 2);
    });
  }

  it("returns 503 with Retry-After when the queue is full, and a disconnecting client stops its generation", async () => {
    const controller = new AbortController();
    const long = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: chat({ max_tokens: 1900, temperature: 0, stream: true }),
      signal: controller.signal,
    });
    assert.equal(long.status, 200);
    const reader = long.body?.getReader();
    assert.ok(reader);
    await reader.read();
    const queued = client.chat.completions.create({
      model: modelName,
      messages,
      max_tokens: 3,
      temperature: 0,
    });
    let health = { models: [{ slots: { waiting: 0 } }] };
    // Polling: the queue is the server process's state, which only /health shows.
    await waitFor(
      "the second request to wait in the server's queue",
      async () => {
        health = (await (await fetch(`${server.url}/health`)).json()) as typeof health;
        return health.models[0]?.slots.waiting === 1 ? true : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 10, describe: () => JSON.stringify(health) },
    );
    assert.equal(health.models[0]?.slots.waiting, 1, "the second request waits in the queue");
    const refused = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: chat({ max_tokens: 3 }),
    });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "1");
    const refusal = (await refused.json()) as { error: { code: string; type: string; message: string } };
    assert.equal(refusal.error.code, "server_overloaded");
    assert.equal(refusal.error.type, "server_error");
    assert.match(refusal.error.message, /busy/);

    const disconnectedAt = performance.now();
    controller.abort();
    const answer = await queued;
    assert.equal(answer.usage?.completion_tokens, 3, "the queued request ran once the slot was freed");
    assert.ok(
      performance.now() - disconnectedAt < 5_000,
      "the slot was freed quickly, not after 1900 tokens",
    );
    await server.waitForOutput(/generation cancelled: client disconnected/, { timeoutMs: 10_000 });
    assert.match(server.output(), /generation cancelled: client disconnected/);
  });
});
