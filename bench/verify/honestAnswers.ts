/**
 * Generates honest answers in a process of its own, for the separate-processes condition of `npm run calibrate`:
 * `node --import tsx bench/verify/honestAnswers.ts <job.json> <answers.json>`. The job is
 * `{home, models, options, requests}` (a MYCEL_HOME with the fixture's models, engine options, requests); the
 * answers file gets the audit inputs as a JSON array, one per request.
 */
import { readFile, writeFile } from "node:fs/promises";
import type { EngineOptions } from "../../src/engine/index.ts";
import type { AuditInput, InferenceRequest } from "../../src/protocol/index.ts";
import { type CheatModels, cheatEngine, honestAnswer } from "../../test/fixtures/cheats.ts";

/** What the parent hands this process. */
export type HonestAnswersJob = {
  home: string;
  models: CheatModels;
  options: Partial<EngineOptions>;
  requests: InferenceRequest[];
};

const [jobPath, answersPath] = process.argv.slice(2);
if (!jobPath || !answersPath) {
  process.stderr.write("usage: node --import tsx bench/verify/honestAnswers.ts <job.json> <answers.json>\n");
  process.exit(2);
}
const job = JSON.parse(await readFile(jobPath, "utf8")) as HonestAnswersJob;
const engine = await cheatEngine({ home: job.home, models: job.models, options: job.options });
const answers: AuditInput[] = [];
for (const request of job.requests) answers.push(await honestAnswer({ engine, models: job.models, request }));
await writeFile(answersPath, JSON.stringify(answers));
await engine.close();
