/** An auditor: parses audit input, loads the claimed model from the local store by hash, and audits. */
import { createEngine, type Engine, type EngineOptions } from "../engine/index.ts";
import { InvalidInputError, ModelNotFoundError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { openModelStore } from "../model/index.ts";
import { type AuditInput, auditInputSchema } from "../protocol/index.ts";
import { type AuditVerdict, auditAnswer } from "./audit.ts";
import { type AuditTolerances, auditPrefillMaxBatchSize } from "./tolerances.ts";

/** Parameters of {@link createAuditor}. */
export type CreateAuditorParameters = {
  /** MYCEL_HOME, whose model store holds the models audits claim. */
  home: string;
  /** Engine settings for re-evaluation (default: one sequence, batches of up to {@link auditPrefillMaxBatchSize}). */
  engineOptions?: Partial<EngineOptions>;
  tolerances?: AuditTolerances;
  logger?: Logger;
};

/** An auditor made by {@link createAuditor}. */
export type Auditor = {
  /** Validates raw input (throws InvalidInputError naming the bad field) and returns it typed. */
  parse(value: unknown): AuditInput;
  /** Audits raw or parsed input; throws InvalidInputError or ModelNotFoundError for input it cannot audit. */
  audit(value: unknown, options?: { signal?: AbortSignal }): Promise<AuditVerdict>;
  engine: Engine;
  close(): Promise<void>;
};

/** Parses audit input; the error names the first bad field and the expected shape. */
export function parseAuditInput(value: unknown): AuditInput {
  const parsed = auditInputSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.map(String).join(".") : "input";
  throw new InvalidInputError(`bad audit input: ${where} ${issue?.message ?? "is invalid"}`, {
    code: "invalid_audit_input",
    param: where,
    hint: "give {modelHash, request, promptTokens, outputTokens, fingerprints, finishReason, receipt?} as docs/VERIFICATION.md describes (an answer's mycel.evidence), or the whole saved answer",
  });
}

/** Creates an auditor; models are loaded on first use and kept. */
export function createAuditor(parameters: CreateAuditorParameters): Auditor {
  const logger = parameters.logger ?? silentLogger;
  const store = openModelStore({ home: parameters.home });
  const engine = createEngine({
    options: {
      parallelism: 1,
      maxQueue: 16,
      batchSize: auditPrefillMaxBatchSize,
      ...parameters.engineOptions,
    },
    logger,
  });
  const loading = new Map<string, Promise<unknown>>();

  async function ensureModel(hash: string) {
    let pending = loading.get(hash);
    if (!pending) {
      pending = (async () => {
        const records = await store.list();
        const record = records.find((entry) => entry.hash === hash);
        if (!record)
          throw new ModelNotFoundError(`sha256:${hash}`, {
            hint: "an audit needs the claimed model in the local store: add it with `mycel model add <path|url|hf:...>` (its sha256 must match)",
          });
        await engine.loadModel({ hash: record.hash, path: store.pathOf(record.hash), name: record.name });
      })();
      loading.set(hash, pending);
      pending.catch(() => loading.delete(hash));
    }
    await pending;
  }

  return {
    parse: parseAuditInput,
    engine,
    async audit(value, options = {}) {
      const input = parseAuditInput(value);
      await ensureModel(input.modelHash.slice(2));
      return auditAnswer({ engine, input, tolerances: parameters.tolerances, signal: options.signal });
    },
    close: () => engine.close(),
  };
}
