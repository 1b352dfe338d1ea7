/** Resumable HTTP(S) downloads of model files, hashed while streaming. */
import { createHash, type Hash } from "node:crypto";
import { once } from "node:events";
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { stat, unlink } from "node:fs/promises";
import { DownloadError, InvalidModelFileError } from "../errors/index.ts";

/** Where a model comes from: a local file or a URL (`hf:` sources are turned into URLs). */
export type ModelSource = { kind: "file"; path: string } | { kind: "url"; url: string; fileName: string };

/** Progress of a long copy or download; `total` is undefined when the server does not say. */
export type TransferProgress = { received: number; total: number | undefined; resumedFrom: number };

const ggufMagic = Buffer.from("GGUF", "ascii");

/** The Hugging Face endpoint `hf:` sources use: `MYCEL_HF_ENDPOINT`, else `HF_ENDPOINT`, else huggingface.co. */
export function huggingFaceEndpoint(): string {
  return (process.env.MYCEL_HF_ENDPOINT ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
}

/** Parses `path`, `https://...`, `http://...` or `hf:owner/repo/path/to/file.gguf[@revision]`. */
export function parseModelSource(source: string): ModelSource {
  if (source.startsWith("hf:")) {
    const spec = source.slice(3);
    const [pathPart = "", revision = "main"] = spec.split("@");
    const parts = pathPart.split("/").filter(Boolean);
    if (parts.length < 3 || !parts.at(-1)?.endsWith(".gguf")) {
      throw new DownloadError(`"${source}" is not a valid hf: source`, {
        code: "invalid_source",
        hint: "use hf:owner/repo/file.gguf (optionally hf:owner/repo/dir/file.gguf@revision)",
      });
    }
    const [owner, repo, ...file] = parts;
    const filePath = file.map(encodeURIComponent).join("/");
    return {
      kind: "url",
      url: `${huggingFaceEndpoint()}/${owner}/${repo}/resolve/${encodeURIComponent(revision)}/${filePath}`,
      fileName: file.at(-1) ?? "model.gguf",
    };
  }
  if (/^https?:\/\//i.test(source)) {
    let url: URL;
    try {
      url = new URL(source);
    } catch (cause) {
      throw new DownloadError(`"${source}" is not a valid URL`, { code: "invalid_source", cause });
    }
    const fileName = decodeURIComponent(url.pathname.split("/").filter(Boolean).at(-1) ?? "model.gguf");
    return { kind: "url", url: url.toString(), fileName };
  }
  return { kind: "file", path: source };
}

const unreachableCodes = new Set([
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNREFUSED",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ECONNRESET",
  "ETIMEDOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The innermost cause's message: fetch wraps the useful one ("bad port", "getaddrinfo ENOTFOUND") in "fetch failed". */
function innermostMessage(error: unknown): string {
  let current: unknown = error;
  let message = error instanceof Error ? error.message : String(error);
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    message = current.message;
    current = current.cause;
  }
  return message;
}

function unreachable(url: string, error: unknown): DownloadError {
  const host = new URL(url).host;
  const code = networkErrorCode(error) ?? innermostMessage(error);
  return new DownloadError(`cannot reach ${host} (${code}): are you offline?`, {
    code: "network_unreachable",
    details: error instanceof Error ? error.message : String(error),
    hint: "check the network and run the same command again: the download resumes where it stopped. Offline, add a local file (`mycel model add ./model.gguf`) or make a test model (`mycel model make-test`)",
    cause: error,
  });
}

function httpFailure(url: string, status: number, statusText: string): DownloadError {
  const hints: Record<number, string> = {
    401: "the file is private or gated: set HF_TOKEN to an access token that may read it",
    403: "the file is private or gated: set HF_TOKEN to an access token that may read it",
    404: "check the owner, repository and file name (hf:owner/repo/file.gguf)",
  };
  return new DownloadError(`download of ${url} failed: HTTP ${status} ${statusText}`.trim(), {
    code: `http_${status}`,
    hint: hints[status] ?? "try again later",
  });
}

/** Parameters of {@link downloadFile}. */
export type DownloadFileParameters = {
  url: string;
  /** The partial file; an existing one is resumed with an HTTP Range request. */
  partPath: string;
  onProgress?: (progress: TransferProgress) => void;
  signal?: AbortSignal;
  /** Abort when no byte arrives for this long (default 60 s). The part file is kept for a resume. */
  stallTimeoutMs?: number;
  /** Time allowed to connect and receive the headers (default 30 s). */
  connectTimeoutMs?: number;
};

/** Return type of {@link downloadFile}. */
export type DownloadFileReturnType = { sha256: string; sizeBytes: number; resumedFrom: number };

async function hashExisting(path: string, hash: Hash): Promise<number> {
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return size;
}

/** Destroys a write stream and waits until its file is closed (so that a following unlink cannot race its open). */
export async function closeStream(stream: WriteStream) {
  if (stream.closed) return;
  const closed = once(stream, "close");
  stream.destroy();
  await closed;
}

async function existingSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Downloads `url` into `partPath`, resuming a previous partial download, and returns the sha256 of the whole file. */
export async function downloadFile(parameters: DownloadFileParameters): Promise<DownloadFileReturnType> {
  const { url, partPath } = parameters;
  const stallTimeoutMs = parameters.stallTimeoutMs ?? 60_000;
  let offset = await existingSize(partPath);
  const headers: Record<string, string> = { "user-agent": "mycel" };
  const token = process.env.HF_TOKEN;
  if (token && url.startsWith(huggingFaceEndpoint())) headers.authorization = `Bearer ${token}`;
  if (offset > 0) headers.range = `bytes=${offset}-`;

  const controller = new AbortController();
  const onAbort = () => controller.abort(parameters.signal?.reason);
  parameters.signal?.addEventListener("abort", onAbort, { once: true });
  const connectTimer = setTimeout(
    () => controller.abort(new Error("timed out waiting for the server")),
    parameters.connectTimeoutMs ?? 30_000,
  );
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: controller.signal, redirect: "follow" });
  } catch (error) {
    parameters.signal?.removeEventListener("abort", onAbort);
    if (parameters.signal?.aborted) throw parameters.signal.reason;
    const code = networkErrorCode(error);
    if (code === undefined || unreachableCodes.has(code)) throw unreachable(url, error);
    throw new DownloadError(`download of ${url} failed (${code})`, {
      code: "download_failed",
      details: error instanceof Error ? error.message : String(error),
      hint: "check the URL; run the same command again to resume",
      cause: error,
    });
  } finally {
    clearTimeout(connectTimer);
  }

  try {
    if (response.status === 416 && offset > 0) {
      // The part file is already complete (or longer than the file): start over to be safe.
      await response.body?.cancel();
      await unlink(partPath);
      parameters.signal?.removeEventListener("abort", onAbort);
      return await downloadFile(parameters);
    }
    if (!response.ok || !response.body) throw httpFailure(url, response.status, response.statusText);
    const resumed = response.status === 206 && offset > 0;
    if (!resumed) offset = 0;
    const hash = createHash("sha256");
    if (resumed) await hashExisting(partPath, hash);
    const lengthHeader = Number(response.headers.get("content-length"));
    const total = Number.isFinite(lengthHeader) && lengthHeader > 0 ? offset + lengthHeader : undefined;
    const file = createWriteStream(partPath, { flags: resumed ? "a" : "w" });
    let received = offset;
    let checkedMagic = resumed;
    let head = Buffer.alloc(0);
    let stallTimer = setTimeout(() => controller.abort(new Error("stalled")), stallTimeoutMs);
    try {
      for await (const chunk of response.body) {
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => controller.abort(new Error("stalled")), stallTimeoutMs);
        const bytes = Buffer.from(chunk);
        if (!checkedMagic) {
          head = Buffer.concat([head, bytes]).subarray(0, 4);
          if (head.length >= 4) {
            checkedMagic = true;
            if (!head.equals(ggufMagic)) {
              throw new InvalidModelFileError(
                `${url} is not a GGUF file (it starts with ${JSON.stringify(head.toString("latin1"))})`,
                {
                  code: "not_gguf",
                  hint: "point at the .gguf file itself; on Hugging Face use hf:owner/repo/file.gguf",
                },
              );
            }
          }
        }
        hash.update(bytes);
        received += bytes.length;
        if (!file.write(bytes)) await once(file, "drain");
        parameters.onProgress?.({ received, total, resumedFrom: resumed ? offset : 0 });
      }
    } catch (error) {
      await closeStream(file);
      if (error instanceof InvalidModelFileError) {
        await unlink(partPath).catch(() => {});
        throw error;
      }
      if (parameters.signal?.aborted) throw parameters.signal.reason;
      throw new DownloadError(`download of ${url} was interrupted after ${received} bytes`, {
        code: "download_interrupted",
        details: error instanceof Error ? error.message : String(error),
        hint: "run the same command again: it resumes from where it stopped",
        cause: error,
      });
    } finally {
      clearTimeout(stallTimer);
    }
    await new Promise<void>((resolve, reject) =>
      file.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    if (total !== undefined && received !== total) {
      throw new DownloadError(`download of ${url} ended early: ${received} of ${total} bytes`, {
        code: "download_interrupted",
        hint: "run the same command again: it resumes from where it stopped",
      });
    }
    if (!checkedMagic)
      throw new InvalidModelFileError(`${url} is too short to be a GGUF file`, { code: "not_gguf" });
    return { sha256: hash.digest("hex"), sizeBytes: received, resumedFrom: resumed ? offset : 0 };
  } finally {
    parameters.signal?.removeEventListener("abort", onAbort);
  }
}
