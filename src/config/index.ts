/** One typed configuration for every role: defaults, then MYCEL_HOME/config.json, then environment, then flags. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { InvalidInputError } from "../errors/index.ts";
import { defaultEngineOptions, type EngineOptions } from "./engineOptions.ts";
import { resolveMycelHome } from "./home.ts";

export { defaultEngineOptions, type EngineOptions } from "./engineOptions.ts";
export { resolveMycelHome } from "./home.ts";
export { roleDefaults } from "./roleDefaults.ts";

/** Settings of `mycel serve` and `mycel demo`. */
export type ServeConfig = {
  host: string;
  port: number;
  maxBodyBytes: number;
  /** HTTP limits of the API (unset: the api part's defaults, docs/CONFIG.md). */
  headerTimeoutMs?: number;
  bodyTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  maxConnections?: number;
};

/** The HTTP limits a serve config sets (unset ones are left to the API's defaults). */
export function httpLimitsOf(serve: ServeConfig) {
  return {
    headerTimeoutMs: serve.headerTimeoutMs,
    bodyTimeoutMs: serve.bodyTimeoutMs,
    keepAliveTimeoutMs: serve.keepAliveTimeoutMs,
    maxConnections: serve.maxConnections,
  };
}

/** The whole configuration. */
export type MycelConfig = {
  home: string;
  engine: EngineOptions;
  serve: ServeConfig;
};

const fileSchema = z
  .object({
    engine: z
      .object({
        parallelism: z.number().int().min(1).max(64),
        threadsPerSequence: z.number().int().min(1).max(256),
        contextSize: z.number().int().min(64),
        maxQueue: z.number().int().min(0),
        batchSize: z.number().int().min(1),
      })
      .partial()
      .strict(),
    serve: z
      .object({
        host: z.string().min(1),
        port: z.number().int().min(0).max(65535),
        maxBodyBytes: z.number().int().min(1024),
        headerTimeoutMs: z.number().int().min(100),
        bodyTimeoutMs: z.number().int().min(100),
        keepAliveTimeoutMs: z.number().int().min(100),
        maxConnections: z.number().int().min(1),
      })
      .partial()
      .strict(),
  })
  .partial()
  .strict();

/** Overrides from flags; undefined leaves the value as it is. */
export type ConfigOverrides = {
  home?: string;
  engine?: Partial<EngineOptions>;
  serve?: Partial<ServeConfig>;
};

function readConfigFile(home: string) {
  const path = join(home, "config.json");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return {};
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new InvalidInputError(`${path} is not valid JSON`, {
      code: "invalid_config",
      cause,
      hint: "fix or delete the file",
    });
  }
  const result = fileSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new InvalidInputError(`${path}: ${issue?.path.join(".") ?? ""} ${issue?.message ?? "is invalid"}`, {
      code: "invalid_config",
      hint: "see docs/CONFIG.md for the keys and their ranges",
    });
  }
  return result.data;
}

function envInteger(name: string): number | undefined {
  const value = process.env[name];
  if (value === undefined || value === "") return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) {
    throw new InvalidInputError(`${name}=${value} is not a non-negative integer`, { code: "invalid_config" });
  }
  return parsed;
}

function defined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Partial<T>;
}

/** Loads the configuration: defaults < config.json < MYCEL_* environment < overrides (flags). */
export function loadConfig(overrides: ConfigOverrides = {}): MycelConfig {
  const home = resolveMycelHome(overrides.home);
  const file = readConfigFile(home);
  const environment = {
    engine: defined({
      parallelism: envInteger("MYCEL_PARALLELISM"),
      threadsPerSequence: envInteger("MYCEL_THREADS"),
      contextSize: envInteger("MYCEL_CONTEXT_SIZE"),
      maxQueue: envInteger("MYCEL_MAX_QUEUE"),
    }),
    serve: defined({ host: process.env.MYCEL_HOST || undefined, port: envInteger("MYCEL_PORT") }),
  };
  return {
    home,
    engine: {
      ...defaultEngineOptions(),
      ...file.engine,
      ...environment.engine,
      ...defined(overrides.engine ?? {}),
    },
    serve: {
      host: "127.0.0.1",
      port: 8080,
      maxBodyBytes: 1024 * 1024,
      ...file.serve,
      ...environment.serve,
      ...defined(overrides.serve ?? {}),
    },
  };
}
