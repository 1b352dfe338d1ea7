#!/usr/bin/env node
// HTTP client for scripts/multihost/run.sh, run inside the gateway's network namespace (the gateway API is
// bound to 127.0.0.1 there). Node's own fetch only: no curl or jq needed. Each command prints one JSON line.
//
//   client.mjs providers <url> <count> <timeout-seconds>
//     polls GET <url>/mycel/v1/providers until it lists <count> providers; exit 0 then, 1 on timeout
//   client.mjs chat <url> <model> <prompt> [seed]
//     POST <url>/v1/chat/completions, then GET the receipts by request id; exit 0 when the answer is
//     non-empty and carries at least one receipt, 1 otherwise
//   client.mjs stream <url> <model> <prompt> <seed> <max-tokens>
//     the same request streamed (SSE, greedy): prints the whole text, its usage and the `mycel` extension;
//     exit 0 when the stream ended with [DONE] and a non-empty answer
//   client.mjs connection <url> <provider address> <relayed|direct> <timeout-seconds>
//     polls GET <url>/mycel/v1/providers until that provider's `connection` is the one named; exit 1 on timeout
const [command, url, ...rest] = process.argv.slice(2);

function print(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function getJson(path, init, timeoutMs) {
  const response = await fetch(`${url}${path}`, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { unparsed: text.slice(0, 500) };
  }
  return { status: response.status, body };
}

async function providers() {
  const count = Number(rest[0]);
  const started = Date.now();
  const deadline = started + Number(rest[1]) * 1000;
  let last = { error: "no answer yet" };
  for (;;) {
    try {
      const { status, body } = await getJson("/mycel/v1/providers", {}, 5_000);
      const list = Array.isArray(body?.data) ? body.data : [];
      last = {
        status,
        count: list.length,
        providers: list.map((entry) => ({
          peer_id: entry.peer_id,
          address: entry.address,
          connection: entry.connection,
        })),
      };
      if (status === 200 && list.length >= count) {
        print({ ok: true, seconds: (Date.now() - started) / 1000, ...last });
        return 0;
      }
    } catch (error) {
      last = { error: String(error?.cause?.message ?? error?.message ?? error) };
    }
    if (Date.now() >= deadline) {
      print({ ok: false, reason: `fewer than ${count} providers after ${rest[1]} s`, ...last });
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function chat() {
  const [model, prompt, seed] = rest;
  const started = performance.now();
  let result;
  try {
    result = await getJson(
      "/v1/chat/completions",
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model,
          messages: [{ role: "user", content: prompt }],
          max_tokens: 16,
          ...(seed === undefined ? {} : { seed: Number(seed) }),
        }),
      },
      30_000,
    );
  } catch (error) {
    print({ ok: false, reason: `request failed: ${error?.cause?.message ?? error?.message ?? error}` });
    return 1;
  }
  const { status, body } = result;
  const content = body?.choices?.[0]?.message?.content ?? "";
  const mycel = body?.mycel ?? {};
  const receipts = Array.isArray(mycel.receipts) ? mycel.receipts : [];
  const summary = {
    status,
    ms: Math.round(performance.now() - started),
    content,
    providers: mycel.providers ?? [],
    failovers: mycel.failovers,
    receipts: receipts.length,
    request_id: mycel.request_id,
  };
  if (status !== 200) {
    print({
      ok: false,
      reason: `HTTP ${status}: ${JSON.stringify(body?.error ?? body).slice(0, 400)}`,
      ...summary,
    });
    return 1;
  }
  if (typeof content !== "string" || content.length === 0) {
    print({ ok: false, reason: "empty answer", ...summary });
    return 1;
  }
  if (receipts.length === 0) {
    print({ ok: false, reason: "no receipt in mycel.receipts", ...summary });
    return 1;
  }
  // The gateway also stores the receipts it verified: they must be retrievable by request id.
  try {
    const stored = await getJson(`/mycel/v1/receipts/${mycel.request_id}`, {}, 5_000);
    summary.stored_receipts_status = stored.status;
    if (stored.status !== 200) {
      print({ ok: false, reason: `GET /mycel/v1/receipts/<id> answered ${stored.status}`, ...summary });
      return 1;
    }
  } catch (error) {
    print({ ok: false, reason: `receipts lookup failed: ${error?.message ?? error}`, ...summary });
    return 1;
  }
  print({ ok: true, ...summary });
  return 0;
}

async function stream() {
  const [model, prompt, seed, maxTokens] = rest;
  const started = performance.now();
  let response;
  try {
    response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model,
        messages: [{ role: "user", content: prompt }],
        max_tokens: Number(maxTokens),
        temperature: 0,
        seed: Number(seed),
        stream: true,
        stream_options: { include_usage: true },
      }),
      signal: AbortSignal.timeout(60_000),
    });
  } catch (error) {
    print({ ok: false, reason: `request failed: ${error?.cause?.message ?? error?.message ?? error}` });
    return 1;
  }
  if (response.status !== 200) {
    print({ ok: false, reason: `HTTP ${response.status}: ${(await response.text()).slice(0, 400)}` });
    return 1;
  }
  let content = "";
  let completionTokens;
  let mycel = {};
  let done = false;
  let chunks = 0;
  let buffered = "";
  const decoder = new TextDecoder();
  try {
    for await (const bytes of response.body) {
      buffered += decoder.decode(bytes, { stream: true });
      let end = buffered.indexOf("\n\n");
      while (end >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        end = buffered.indexOf("\n\n");
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice("data: ".length);
          if (data === "[DONE]") {
            done = true;
            continue;
          }
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(`error event: ${JSON.stringify(chunk.error).slice(0, 400)}`);
          const delta = chunk.choices?.[0]?.delta?.content;
          if (delta) {
            content += delta;
            chunks++;
          }
          if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
          if (chunk.mycel) mycel = chunk.mycel;
        }
      }
    }
  } catch (error) {
    print({ ok: false, reason: `stream broke: ${error?.message ?? error}`, content, chunks });
    return 1;
  }
  const summary = {
    ms: Math.round(performance.now() - started),
    chunks,
    completion_tokens: completionTokens,
    content,
    providers: mycel.providers ?? [],
    failovers: mycel.failovers,
    receipts: Array.isArray(mycel.receipts) ? mycel.receipts.length : 0,
  };
  if (!done || content.length === 0) {
    print({ ok: false, reason: done ? "empty answer" : "the stream ended without [DONE]", ...summary });
    return 1;
  }
  print({ ok: true, ...summary });
  return 0;
}

async function connection() {
  const [address, wanted, timeoutSeconds] = rest;
  const deadline = Date.now() + Number(timeoutSeconds) * 1000;
  let last = { error: "no answer yet" };
  for (;;) {
    try {
      const { status, body } = await getJson("/mycel/v1/providers", {}, 5_000);
      const entry = (Array.isArray(body?.data) ? body.data : []).find(
        (candidate) => String(candidate.address).toLowerCase() === address.toLowerCase(),
      );
      last = { status, listed: entry !== undefined, connection: entry?.connection };
      if (entry?.connection === wanted) {
        print({ ok: true, ...last });
        return 0;
      }
    } catch (error) {
      last = { error: String(error?.cause?.message ?? error?.message ?? error) };
    }
    if (Date.now() >= deadline) {
      print({ ok: false, reason: `connection not ${wanted} after ${timeoutSeconds} s`, ...last });
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const commands = { providers, chat, stream, connection };
if (!url || !(command in commands)) {
  process.stderr.write(
    "usage: client.mjs providers <url> <count> <timeout-s> | chat <url> <model> <prompt> [seed] | " +
      "stream <url> <model> <prompt> <seed> <max-tokens> | connection <url> <address> <relayed|direct> <timeout-s>\n",
  );
  process.exit(2);
}
process.exit(await commands[command]());
