/**
 * The client side of bench/engine, run in a worker thread: a real client is another program, so its CPU work
 * (the openai SDK's SSE parsing, JSON decoding) must not share the server's event loop. Timings are taken here,
 * from the moment the request is made to the moment each chunk is read.
 */
import { Agent, request } from "node:http";
import { parentPort } from "node:worker_threads";
import OpenAI from "openai";

/** One measured generation. */
export type Sample = { firstTokenMs: number; totalMs: number; completionTokens: number; text: string };

/** What the main thread asks the client worker to do. */
export type ClientRequest = {
  id: number;
  kind: "openai" | "node-http" | "concurrent";
  url: string;
  model: string;
  messages: { role: "user"; content: string }[];
  maxTokens: number;
  seed: number;
  /** Streams at once, for `concurrent`. */
  count?: number;
};

/** The worker's answer: samples, plus the wall time for `concurrent`. */
export type ClientResponse = { id: number; samples?: Sample[]; wallMs?: number; error?: string };

type Job = Omit<ClientRequest, "id" | "kind" | "count">;

const clients = new Map<string, OpenAI>();
const agent = new Agent({ keepAlive: true });

/** The request every client path sends: greedy, seeded, streamed with usage. */
function streamedChatRequest(job: Job) {
  return {
    model: job.model,
    messages: job.messages,
    max_tokens: job.maxTokens,
    temperature: 0,
    seed: job.seed,
    stream: true as const,
    stream_options: { include_usage: true },
  };
}

/** One streamed chat completion through the HTTP API with the openai client. */
async function runApi(job: Job): Promise<Sample> {
  let client = clients.get(job.url);
  if (!client) {
    client = new OpenAI({ baseURL: `${job.url}/v1`, apiKey: "none", maxRetries: 0 });
    clients.set(job.url, client);
  }
  const started = performance.now();
  const stream = await client.chat.completions.create(streamedChatRequest(job));
  let firstTokenMs: number | undefined;
  let completionTokens: number | undefined;
  let text = "";
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta?.content;
    if (content) {
      firstTokenMs ??= performance.now() - started;
      text += content;
    }
    if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
  }
  const totalMs = performance.now() - started;
  if (completionTokens === undefined) throw new Error("the API stream ended without a usage chunk");
  return { firstTokenMs: firstTokenMs ?? totalMs, totalMs, completionTokens, text };
}

type StreamChunk = {
  choices?: { delta?: { content?: string } }[];
  usage?: { completion_tokens: number } | null;
  error?: { message: string };
};

/** The same request with node:http and a minimal SSE reader: what the API costs without the openai client. */
function runApiWithNodeHttp(job: Job): Promise<Sample> {
  const body = JSON.stringify(streamedChatRequest(job));
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let firstTokenMs: number | undefined;
    let completionTokens: number | undefined;
    let text = "";
    let buffered = "";
    const onEvent = (event: string) => {
      const data = event.startsWith("data: ") ? event.slice("data: ".length) : "";
      if (!data || data === "[DONE]") return;
      const chunk = JSON.parse(data) as StreamChunk;
      if (chunk.error) throw new Error(`the API failed mid-stream: ${chunk.error.message}`);
      const content = chunk.choices?.[0]?.delta?.content;
      if (content) {
        firstTokenMs ??= performance.now() - started;
        text += content;
      }
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    };
    const outgoing = request(
      `${job.url}/v1/chat/completions`,
      { method: "POST", agent, headers: { "content-type": "application/json" } },
      (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(new Error(`the API answered ${response.statusCode}`));
          return;
        }
        response.setEncoding("utf8");
        response.on("data", (piece: string) => {
          buffered += piece;
          for (let end = buffered.indexOf("\n\n"); end !== -1; end = buffered.indexOf("\n\n")) {
            const event = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            try {
              onEvent(event);
            } catch (error) {
              response.destroy();
              reject(error);
              return;
            }
          }
        });
        response.on("end", () => {
          const totalMs = performance.now() - started;
          if (completionTokens === undefined) reject(new Error("the API stream ended without a usage chunk"));
          else resolve({ firstTokenMs: firstTokenMs ?? totalMs, totalMs, completionTokens, text });
        });
        response.on("error", reject);
      },
    );
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}

async function handle(message: ClientRequest): Promise<ClientResponse> {
  const { id, kind, count, ...job } = message;
  if (kind === "openai") return { id, samples: [await runApi(job)] };
  if (kind === "node-http") return { id, samples: [await runApiWithNodeHttp(job)] };
  const started = performance.now();
  const samples = await Promise.all(Array.from({ length: count ?? 1 }, () => runApi(job)));
  return { id, samples, wallMs: performance.now() - started };
}

parentPort?.on("message", (message: ClientRequest | "close") => {
  if (message === "close") {
    agent.destroy();
    parentPort?.close();
    return;
  }
  handle(message).then(
    (response) => parentPort?.postMessage(response),
    (error: unknown) =>
      parentPort?.postMessage({
        id: message.id,
        error: error instanceof Error ? error.message : String(error),
      }),
  );
});
