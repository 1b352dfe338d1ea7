/** The model store: GGUF files content-addressed by sha256 under MYCEL_HOME, with an index of their metadata. */
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { readGgufFileInfo } from "node-llama-cpp";
import { resolveMycelHome } from "../config/index.ts";
import {
  describeAvailable,
  InvalidInputError,
  InvalidModelFileError,
  ModelNotFoundError,
  MycelError,
} from "../errors/index.ts";
import { closeStream, downloadFile, parseModelSource, type TransferProgress } from "./download.ts";

/** What the store knows about one model. */
export type ModelRecord = {
  /** sha256 of the GGUF file, lowercase hex: the model's identity everywhere in Mycel. */
  hash: string;
  name: string;
  architecture: string;
  parameterCount: number;
  quantization: string;
  sizeBytes: number;
  license: string | undefined;
  contextLength: number | undefined;
  /** Where it came from: a path, a URL, or `make-test ...`. */
  source: string;
  addedAt: string;
};

type StoreIndex = { version: 1; models: ModelRecord[] };

const hashPattern = /^[0-9a-f]{64}$/;

async function fileTypeName(fileType: number | undefined): Promise<string | undefined> {
  if (fileType === undefined) return undefined;
  const { GgufFileType } = await import("node-llama-cpp");
  const name = GgufFileType[fileType];
  return name ? name.replace(/^(MOSTLY|ALL)_/, "") : undefined;
}

/**
 * Checks magic, version and that the declared tensor and key counts fit in the file, before any parser
 * trusts them (a corrupt count would otherwise make a reader loop for a very long time).
 */
async function checkGgufHeader(path: string) {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(24);
    const { bytesRead } = await handle.read(head, 0, 24, 0);
    const invalid = (reason: string) =>
      new InvalidModelFileError(`${path} is not a valid GGUF file: ${reason}`, {
        code: "not_gguf",
        hint: "Mycel runs GGUF models (llama.cpp's format); check that the file is complete, or convert other formats with llama.cpp's convert_hf_to_gguf.py",
      });
    if (bytesRead < 24) throw invalid("it is too short");
    if (head.subarray(0, 4).toString("latin1") !== "GGUF") {
      throw invalid(`bad magic ${JSON.stringify(head.subarray(0, 4).toString("latin1"))}`);
    }
    const version = head.readUInt32LE(4);
    if (version !== 2 && version !== 3) throw invalid(`unsupported version ${version}`);
    const tensorCount = head.readBigUInt64LE(8);
    const keyCount = head.readBigUInt64LE(16);
    // A tensor info takes at least 8 + 4 + 8 + 4 + 8 bytes, a key/value at least 8 + 4 + 1.
    if (tensorCount * 32n + keyCount * 13n > BigInt(size)) {
      throw invalid(
        `it declares ${tensorCount} tensors and ${keyCount} keys, more than its ${size} bytes can hold`,
      );
    }
  } finally {
    await handle.close();
  }
}

/** Reads a GGUF file's header, metadata and tensor infos (no weights); throws {@link InvalidModelFileError}. */
export async function readGgufInfo(path: string): Promise<Awaited<ReturnType<typeof readGgufFileInfo>>> {
  await checkGgufHeader(path);
  try {
    const { readGgufFileInfo } = await import("node-llama-cpp");
    return await readGgufFileInfo(path, { readTensorInfo: true, logWarnings: false });
  } catch (cause) {
    throw new InvalidModelFileError(`${path} is not a readable GGUF file`, {
      code: "not_gguf",
      details: cause instanceof Error ? cause.message : String(cause),
      cause,
    });
  }
}

/** Reads the metadata of a GGUF file; throws {@link InvalidModelFileError} when it is not one. */
export async function readModelMetadata(path: string) {
  const info = await readGgufInfo(path);
  const general = info.metadata.general ?? {};
  const tensorTypes = new Map<number, number>();
  let parameterCount = 0;
  for (const tensor of info.tensorInfo ?? []) {
    const count = tensor.dimensions.reduce<number>((product, dim) => product * Number(dim), 1);
    parameterCount += count;
    tensorTypes.set(tensor.ggmlType, (tensorTypes.get(tensor.ggmlType) ?? 0) + count);
  }
  const architectureMetadata = info.architectureMetadata as { context_length?: number } | undefined;
  return {
    architecture: String(general.architecture ?? "unknown"),
    name: typeof general.name === "string" ? general.name : undefined,
    license: typeof general.license === "string" ? general.license : undefined,
    quantization: (await fileTypeName(general.file_type as number | undefined)) ?? "unknown",
    parameterCount,
    contextLength: architectureMetadata?.context_length,
    chatTemplate: (info.metadata.tokenizer as { chat_template?: string } | undefined)?.chat_template,
  };
}

/** Parameters of {@link openModelStore}. */
export type OpenModelStoreParameters = { home?: string };

/** Parameters of {@link ModelStore.add}. */
export type AddModelParameters = {
  /** A path, an http(s) URL, or hf:owner/repo/file.gguf. */
  source: string;
  /** The name to list it under; defaults to the file name without `.gguf`. */
  name?: string;
  onProgress?: (progress: TransferProgress) => void;
  signal?: AbortSignal;
};

/** Return type of {@link ModelStore.add}: the record, and whether the file was already in the store. */
export type AddModelReturnType = { model: ModelRecord; alreadyPresent: boolean };

/** The model store of one MYCEL_HOME. */
export type ModelStore = {
  home: string;
  /** All models, sorted by name. */
  list(): Promise<ModelRecord[]>;
  /** Finds a model by name, sha256, `sha256:<hash>` or a unique hash prefix of >= 6 characters. */
  resolve(nameOrHash: string): Promise<ModelRecord>;
  /** The GGUF file of a model in the store. */
  pathOf(hash: string): string;
  add(parameters: AddModelParameters): Promise<AddModelReturnType>;
  /** Adds GGUF bytes made in memory (test models). */
  addBytes(parameters: { bytes: Uint8Array; name: string; source: string }): Promise<AddModelReturnType>;
  /** Removes a model and its file; returns the removed record. */
  remove(nameOrHash: string): Promise<ModelRecord>;
};

/** Opens (creating on first write) the model store under MYCEL_HOME. */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a store is one closure over its folder and index; its methods (add, list, resolve, remove) are short functions over that shared state, not a role
export function openModelStore(parameters: OpenModelStoreParameters = {}): ModelStore {
  const home = resolveMycelHome(parameters.home);
  const modelsDirectory = join(home, "models");
  const indexPath = join(modelsDirectory, "index.json");
  const temporaryDirectory = join(home, "tmp");
  const downloadsDirectory = join(home, "downloads");
  const pathOf = (hash: string) => join(modelsDirectory, `${hash}.gguf`);

  let writeChain: Promise<unknown> = Promise.resolve();

  async function readIndex(): Promise<StoreIndex> {
    try {
      const parsed = JSON.parse(await readFile(indexPath, "utf8")) as StoreIndex;
      if (parsed.version !== 1 || !Array.isArray(parsed.models)) throw new Error("unknown index version");
      return parsed;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, models: [] };
      throw new MycelError(`the model index ${indexPath} is unreadable`, {
        code: "store_corrupt",
        details: error instanceof Error ? error.message : String(error),
        hint: `move it away and add the models again; the files stay in ${modelsDirectory}`,
        cause: error,
      });
    }
  }

  async function writeIndex(index: StoreIndex) {
    await mkdir(modelsDirectory, { recursive: true });
    const temporary = `${indexPath}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(temporary, `${JSON.stringify(index, null, 2)}\n`);
    const handle = await open(temporary, "r");
    await handle.sync();
    await handle.close();
    await rename(temporary, indexPath);
  }

  /** Serializes read-modify-write cycles of the index within this process. */
  function updateIndex<T>(update: (index: StoreIndex) => Promise<T> | T): Promise<T> {
    const next = writeChain.then(async () => {
      const index = await readIndex();
      const result = await update(index);
      await writeIndex(index);
      return result;
    });
    writeChain = next.catch(() => {});
    return next;
  }

  async function list(): Promise<ModelRecord[]> {
    const index = await readIndex();
    return [...index.models].sort((a, b) => a.name.localeCompare(b.name));
  }

  function find(models: ModelRecord[], nameOrHash: string): ModelRecord {
    const query = nameOrHash.trim().replace(/^sha256:/i, "");
    const byName = models.find((model) => model.name === query);
    if (byName) return byName;
    const lower = query.toLowerCase();
    if (/^[0-9a-f]{6,64}$/.test(lower)) {
      const matches = models.filter((model) => model.hash.startsWith(lower));
      if (matches.length === 1 && matches[0]) return matches[0];
      if (matches.length > 1) {
        throw new InvalidInputError(`"${nameOrHash}" matches ${matches.length} models`, {
          code: "ambiguous_model",
          hint: "give more characters of the hash, or the model's name",
        });
      }
    }
    const available = describeAvailable({
      query,
      names: models.map((model) => model.name),
      label: "in the store",
    });
    throw new ModelNotFoundError(nameOrHash, {
      hint: available
        ? `${available} (\`mycel model list\`); add others with \`mycel model add <path|url|hf:owner/repo/file.gguf>\``
        : "the store is empty: add a model with `mycel model add <path|url|hf:owner/repo/file.gguf>` or `mycel model make-test`",
    });
  }

  async function resolve(nameOrHash: string) {
    return find(await list(), nameOrHash);
  }

  async function register(parameters: {
    temporaryPath: string;
    hash: string;
    sizeBytes: number;
    name: string;
    source: string;
  }): Promise<AddModelReturnType> {
    let metadata: Awaited<ReturnType<typeof readModelMetadata>>;
    try {
      metadata = await readModelMetadata(parameters.temporaryPath);
    } catch (error) {
      await unlink(parameters.temporaryPath).catch(() => {});
      throw error;
    }
    return updateIndex(async (index) => {
      const existing = index.models.find((model) => model.hash === parameters.hash);
      const finalPath = pathOf(parameters.hash);
      await mkdir(modelsDirectory, { recursive: true });
      if (existing && (await fileExists(finalPath))) {
        await unlink(parameters.temporaryPath).catch(() => {});
        return { model: existing, alreadyPresent: true };
      }
      await rename(parameters.temporaryPath, finalPath);
      if (existing) return { model: existing, alreadyPresent: true };
      const taken = index.models.some((model) => model.name === parameters.name);
      const name = taken ? `${parameters.name}-${parameters.hash.slice(0, 8)}` : parameters.name;
      const model: ModelRecord = {
        hash: parameters.hash,
        name,
        architecture: metadata.architecture,
        parameterCount: metadata.parameterCount,
        quantization: metadata.quantization,
        sizeBytes: parameters.sizeBytes,
        license: metadata.license,
        contextLength: metadata.contextLength,
        source: parameters.source,
        addedAt: new Date().toISOString(),
      };
      index.models.push(model);
      return { model, alreadyPresent: false };
    });
  }

  function validateName(name: string) {
    const hasControlCharacter = [...name].some((character) => character.charCodeAt(0) < 0x20);
    if (!name || name.length > 200 || /[\s/\\]/.test(name) || hasControlCharacter || hashPattern.test(name)) {
      throw new InvalidInputError(`"${name}" is not a usable model name`, {
        param: "name",
        hint: "use 1-200 characters without spaces or slashes, and not a 64-character hex string",
      });
    }
  }

  async function copyFile(parameters: { path: string; onProgress?: (progress: TransferProgress) => void }) {
    let total: number;
    try {
      total = (await stat(parameters.path)).size;
    } catch (cause) {
      throw new InvalidInputError(`cannot read ${parameters.path}`, {
        code: "file_not_found",
        details: cause instanceof Error ? cause.message : String(cause),
        hint: "give the path of a .gguf file, an https:// URL, or hf:owner/repo/file.gguf",
        cause,
      });
    }
    await mkdir(temporaryDirectory, { recursive: true });
    const temporaryPath = join(temporaryDirectory, `${randomBytes(8).toString("hex")}.part`);
    const hash = createHash("sha256");
    const output = createWriteStream(temporaryPath);
    let received = 0;
    try {
      for await (const chunk of createReadStream(parameters.path, { highWaterMark: 1 << 20 })) {
        const bytes = chunk as Buffer;
        if (received === 0 && bytes.subarray(0, 4).toString("latin1") !== "GGUF") {
          throw new InvalidModelFileError(`${parameters.path} is not a GGUF file`, {
            code: "not_gguf",
            hint: "Mycel runs GGUF models (llama.cpp's format)",
          });
        }
        hash.update(bytes);
        received += bytes.length;
        if (!output.write(bytes)) await once(output, "drain");
        parameters.onProgress?.({ received, total, resumedFrom: 0 });
      }
      await new Promise<void>((resolveEnd, reject) =>
        output.end((error?: Error | null) => (error ? reject(error) : resolveEnd())),
      );
    } catch (error) {
      await closeStream(output);
      await unlink(temporaryPath).catch(() => {});
      throw error;
    }
    if (received < 4) {
      await unlink(temporaryPath).catch(() => {});
      throw new InvalidModelFileError(`${parameters.path} is too short to be a GGUF file`, {
        code: "not_gguf",
      });
    }
    return { temporaryPath, hash: hash.digest("hex"), sizeBytes: received };
  }

  async function add(parameters: AddModelParameters): Promise<AddModelReturnType> {
    if (parameters.name !== undefined) validateName(parameters.name);
    const source = parseModelSource(parameters.source);
    if (source.kind === "file") {
      const copied = await copyFile({ path: source.path, onProgress: parameters.onProgress });
      return register({
        ...copied,
        name: parameters.name ?? defaultName(source.path),
        source: source.path,
      });
    }
    await mkdir(downloadsDirectory, { recursive: true });
    const partPath = join(
      downloadsDirectory,
      `${createHash("sha256").update(source.url).digest("hex").slice(0, 32)}.part`,
    );
    const downloaded = await downloadFile({
      url: source.url,
      partPath,
      onProgress: parameters.onProgress,
      signal: parameters.signal,
    });
    return register({
      temporaryPath: partPath,
      hash: downloaded.sha256,
      sizeBytes: downloaded.sizeBytes,
      name: parameters.name ?? defaultName(source.fileName),
      source: parameters.source,
    });
  }

  async function addBytes(parameters: { bytes: Uint8Array; name: string; source: string }) {
    validateName(parameters.name);
    await mkdir(temporaryDirectory, { recursive: true });
    const temporaryPath = join(temporaryDirectory, `${randomBytes(8).toString("hex")}.part`);
    await writeFile(temporaryPath, parameters.bytes);
    const hash = createHash("sha256").update(parameters.bytes).digest("hex");
    return register({
      temporaryPath,
      hash,
      sizeBytes: parameters.bytes.length,
      name: parameters.name,
      source: parameters.source,
    });
  }

  async function remove(nameOrHash: string) {
    return updateIndex(async (index) => {
      const model = find(index.models, nameOrHash);
      index.models = index.models.filter((entry) => entry.hash !== model.hash);
      await rm(pathOf(model.hash), { force: true });
      return model;
    });
  }

  return { home, list, resolve, pathOf, add, addBytes, remove };
}

function defaultName(path: string) {
  const base = basename(path)
    .replace(/\.gguf$/i, "")
    .replace(/[\s/\\]+/g, "-");
  return base || "model";
}

async function fileExists(path: string) {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
