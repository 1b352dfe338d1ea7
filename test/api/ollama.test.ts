/**
 * Ollama's API of `mycel serve`, end to end: a real `mycel serve` process with a tiny test model, driven by Ollama's
 * own npm client (and raw fetch for the NDJSON bytes): list, show, ps, version, chat and generate (streamed and
 * not, raw and templated, equal to the OpenAI side's answers), refused fields, unknown models, client aborts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Ollama } from "ollama";
import { runMycel, type ServeProcess, startMycelServer, temporaryHome } from "../helpers.ts";

const modelName = "mycel-test-tiny-s1-f32";
const messages = [{ role: "user", content: "Say something about fungi." }];

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
    server = await startMycelServer(
      ["serve", "--model", modelName, "--port", "0", "--parallelism", "1", "--max-queue", "4"],
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
      body: JSON.stringify({ model: modelName, temperature: 0, ...body }),
    });
    assert.equal(response.status, 200);
    const answer = (await response.json()) as {
      choices: { message?: { content: string }; text?: string }[];
    };
    return answer.choices[0]?.message?.content ?? answer.choices[0]?.text ?? "";
  };

  it("lists the model (tags, ps), shows it and says its version", async () => {
    const { models } = await ollama.list();
    assert.equal(models.length, 1);
    const [tag] = models;
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
      running.models.map((model) => model.digest),
      [tag?.digest],
    );
    assert.ok(new Date(running.models[0]?.expires_at ?? 0).getTime() > Date.now());

    const shown = await ollama.show({ model: modelName });
    assert.deepEqual(shown.capabilities, ["completion"]);
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
      body: JSON.stringify({ model: modelName, messages, options: { num_predict: 8, seed: 7 } }),
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
  });

  it("refuses what it does not implement with a 400 naming it, and accepts the fields safe to ignore", async () => {
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ options: { min_p: 0.1 } }, /'options\.min_p' is not supported yet/],
      [{ options: { repeat_penalty: 1.3 } }, /'options\.repeat_penalty' is not supported yet/],
      [{ options: { mirostat: 2 } }, /'options\.mirostat' is not supported: mirostat/],
      [{ options: { flash: true } }, /unsupported parameter 'options\.flash'/],
      [{ format: "json" }, /'format' is not supported yet/],
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
      options: { num_predict: 2, num_ctx: 8192, num_thread: 4, min_p: 0, repeat_penalty: 1 },
    });
    assert.equal(accepted.eval_count, 2);
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
