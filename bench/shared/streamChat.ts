/** Streams chat completions with the official openai client and times them as a user sees them. */
import OpenAI from "openai";

/** The greedy seed every benchmark stream uses. */
export const benchSeed = 42;
/** The prompt of a stream when the caller names none. */
const defaultMessages: { role: "user"; content: string }[] = [
  {
    role: "user",
    content:
      "Write a short story about a mycelium network that carries messages between the trees of a forest.",
  },
];

/** One measured stream, as the client saw it. */
export type Sample = {
  firstTokenMs: number;
  totalMs: number;
  completionTokens: number;
  text: string;
  /** performance.now() at each content chunk. */
  chunkTimes: number[];
  /** UTF-8 bytes of each content chunk: its token count on the byte-level test tokenizer. */
  chunkBytes: number[];
  mycel: MycelExtension | undefined;
};

/** The part of Mycel's `mycel` extension (on the last chunk) this bench reads. */
export type MycelExtension = {
  providers?: string[];
  failovers?: number;
  receipts?: { message: { provider: string; completionTokens: number } }[];
};

const clients = new Map<string, OpenAI>();

/**
 * Streams one chat completion with the openai client: greedy, seed 42, usage included. `onChunk` runs
 * synchronously as each content chunk is read (the failover section kills a provider from it).
 */
export async function streamChat(parameters: {
  url: string;
  model: string;
  maxTokens: number;
  messages?: { role: "user"; content: string }[];
  onChunk?: (index: number) => void;
}): Promise<Sample> {
  let client = clients.get(parameters.url);
  if (!client) {
    client = new OpenAI({ baseURL: `${parameters.url}/v1`, apiKey: "none", maxRetries: 0 });
    clients.set(parameters.url, client);
  }
  const started = performance.now();
  const stream = await client.chat.completions.create({
    model: parameters.model,
    messages: parameters.messages ?? defaultMessages,
    max_tokens: parameters.maxTokens,
    temperature: 0,
    seed: benchSeed,
    stream: true,
    stream_options: { include_usage: true },
  });
  let firstTokenMs: number | undefined;
  let completionTokens: number | undefined;
  let mycel: MycelExtension | undefined;
  let text = "";
  const chunkTimes: number[] = [];
  const chunkBytes: number[] = [];
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta?.content;
    if (content) {
      const now = performance.now();
      firstTokenMs ??= now - started;
      chunkTimes.push(now);
      chunkBytes.push(Buffer.byteLength(content));
      text += content;
      parameters.onChunk?.(chunkTimes.length);
    }
    if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    const extension = (chunk as { mycel?: MycelExtension }).mycel;
    if (extension) mycel = extension;
  }
  const totalMs = performance.now() - started;
  if (completionTokens === undefined) throw new Error("the stream ended without a usage chunk");
  return {
    firstTokenMs: firstTokenMs ?? totalMs,
    totalMs,
    completionTokens,
    text,
    chunkTimes,
    chunkBytes,
    mycel,
  };
}
