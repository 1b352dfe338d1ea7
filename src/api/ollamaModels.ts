/** Ollama's views of the served models: /api/tags, /api/ps, /api/show, /api/version, and model lookup by name. */
import { ModelNotFoundError } from "../errors/index.ts";
import { capabilitiesOf as announcedCapabilitiesOf, type ModelCapability } from "../protocol/index.ts";
import type { ApiModelInfo, InferenceBackend } from "./backend.ts";
import { ollamaBodyRules } from "./ollamaFields.ts";

/**
 * The Ollama release whose API the /api/ routes follow, as far as they implement it (docs/API.md "Ollama API"):
 * what GET /api/version answers, since Ollama's clients compare it with Ollama's versions.
 */
export const ollamaApiVersion = "0.12.0";

/** Go's zero time, which Ollama's clients (Go's included) parse: the time is not known. */
const unknownTime = "0001-01-01T00:00:00Z";

/** Ollama's "8.0B" / "494.03M" for a parameter count; "" when unknown. */
export function parameterSizeOf(count: number | undefined): string {
  if (count === undefined || !Number.isFinite(count) || count <= 0) return "";
  if (count >= 1e9) return `${(count / 1e9).toFixed(1)}B`;
  if (count >= 1e6) return `${(count / 1e6).toFixed(2)}M`;
  if (count >= 1e3) return `${(count / 1e3).toFixed(2)}K`;
  return String(count);
}

/** Ollama's `details` of a model: what is known, "" for the rest. */
function detailsOf(model: ApiModelInfo) {
  const family = model.details?.family ?? "";
  return {
    parent_model: "",
    format: "gguf",
    family,
    families: family ? [family] : null,
    parameter_size: parameterSizeOf(model.details?.parameterCount),
    quantization_level: model.details?.quantization ?? "",
  };
}

/**
 * The model's capabilities under Ollama's names, from what it can do here (`extra.capabilities`, Mycel's names,
 * also under `mycel.capabilities`): "completion" (chat and generate), "tools" (its chat template has a tool-call
 * format Mycel parses: /api/chat takes tools, its row in ollamaFields.ts being `mapped`), "embedding" (/api/embed). Mycel's "grammar" has no Ollama name: `format` works
 * on every model.
 */
export function capabilitiesOf(model: ApiModelInfo): string[] {
  const listed = model.extra?.capabilities;
  const served = announcedCapabilitiesOf({
    capabilities: Array.isArray(listed) ? (listed as ModelCapability[]) : undefined,
  });
  const capabilities: string[] = [];
  if (served.includes("chat") || served.includes("completion")) capabilities.push("completion");
  if (served.includes("tools") && ollamaBodyRules.tools?.status === "mapped") capabilities.push("tools");
  if (served.includes("embeddings")) capabilities.push("embedding");
  return capabilities;
}

/** One entry of GET /api/tags. */
export function ollamaTagOf(model: ApiModelInfo) {
  return {
    name: model.name,
    model: model.name,
    modified_at: model.details?.addedAt ?? unknownTime,
    size: model.details?.sizeBytes ?? 0,
    digest: model.hash,
    details: detailsOf(model),
    mycel: { hash: model.hash, context_length: model.contextLength, ...model.extra },
  };
}

/** One entry of GET /api/ps: every served model stays loaded while the server runs, on the CPU. */
export function ollamaRunningOf(model: ApiModelInfo) {
  const { modified_at: _, ...tag } = ollamaTagOf(model);
  // Ollama reports a model kept loaded for good (keep_alive -1) as expiring far in the future.
  const expires = new Date(Date.UTC(2318, 0, 1)).toISOString();
  return { ...tag, expires_at: expires, size_vram: 0, context_length: model.contextLength ?? 0 };
}

/** The body of POST /api/show. */
export function ollamaShowOf(model: ApiModelInfo) {
  const details = detailsOf(model);
  const architecture = details.family || "mycel";
  const modelInfo: Record<string, unknown> = {
    "general.architecture": details.family,
    ...(model.details?.parameterCount === undefined
      ? {}
      : { "general.parameter_count": model.details.parameterCount }),
    // The window a request may use here (what a client sizes its prompts by), not the training context.
    ...(model.contextLength === undefined ? {} : { [`${architecture}.context_length`]: model.contextLength }),
  };
  return {
    license: "",
    modelfile: "",
    parameters: "",
    template: model.details?.chatTemplate ?? "",
    details,
    model_info: modelInfo,
    capabilities: capabilitiesOf(model),
    modified_at: model.details?.addedAt ?? unknownTime,
    mycel: {
      hash: model.hash,
      context_length: model.contextLength,
      train_context: model.details?.trainContextLength,
      template_syntax: model.details?.chatTemplate === undefined ? undefined : "jinja",
      ...model.extra,
    },
  };
}

/**
 * Finds a model by the name an Ollama client sends: as Mycel names it, or with Ollama's default tag `:latest`
 * appended. An unknown name throws the backend's ModelNotFoundError for the name as sent.
 */
export async function findOllamaModel(backend: InferenceBackend, name: string): Promise<ApiModelInfo> {
  try {
    return await backend.findModel(name);
  } catch (error) {
    if (!(error instanceof ModelNotFoundError) || !name.endsWith(":latest")) throw error;
    try {
      return await backend.findModel(name.slice(0, -":latest".length));
    } catch {
      throw error;
    }
  }
}
