/** Serves models from the store on this machine alone, through the OpenAI-compatible API (`mycel serve`, `demo`). */
import { createEngineBackend, startApiServer } from "../api/index.ts";
import { httpLimitsOf, type MycelConfig } from "../config/index.ts";
import { createEngine } from "../engine/index.ts";
import type { Logger } from "../log/index.ts";
import { type ModelRecord, openModelStore } from "../model/index.ts";

/** A local server started by {@link startLocalServer}. */
export type LocalServer = { url: string; models: ModelRecord[]; close(): Promise<void> };

/** Loads the models (names or hashes in the store) and serves them on config.serve's host and port. */
export async function startLocalServer(parameters: {
  config: MycelConfig;
  models: string[];
  logger: Logger;
}): Promise<LocalServer> {
  const { config, logger } = parameters;
  const store = openModelStore({ home: config.home });
  const records: ModelRecord[] = [];
  for (const query of parameters.models) records.push(await store.resolve(query));
  const engine = createEngine({ options: config.engine, logger });
  for (const record of records)
    await engine.loadModel({ hash: record.hash, path: store.pathOf(record.hash), name: record.name });
  // What the store knows of each model (family, size...) shows in Ollama's /api/tags and /api/show.
  const byHash = new Map(records.map((record) => [record.hash, record]));
  const backend = createEngineBackend(engine, {
    details: (hash) => {
      const record = byHash.get(hash);
      return (
        record && {
          family: record.architecture,
          parameterCount: record.parameterCount,
          quantization: record.quantization,
          sizeBytes: record.sizeBytes,
          addedAt: record.addedAt,
        }
      );
    },
  });
  const server = await startApiServer({
    backend,
    host: config.serve.host,
    port: config.serve.port,
    maxBodyBytes: config.serve.maxBodyBytes,
    limits: httpLimitsOf(config.serve),
    logger: logger.child({ role: "api" }),
  });
  if (!["127.0.0.1", "localhost", "::1"].includes(config.serve.host))
    logger.warn("listening beyond this machine: anyone who can reach this address can use the models", {
      host: config.serve.host,
    });
  return {
    url: server.url,
    models: records,
    async close() {
      await server.close();
      await engine.close();
    },
  };
}
