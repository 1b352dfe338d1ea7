/**
 * `mycel audit`: audits an answer (a saved API answer with its evidence, every segment of it, or the flat audit
 * input) against its evidence with the claimed model from the local store.
 */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import type { MycelConfig } from "../config/index.ts";
import { describeError, InvalidInputError, ModelNotFoundError, type MycelError } from "../errors/index.ts";

/** Exit codes of `mycel audit`. */
export const auditExitCodes = { pass: 0, fail: 1, badInput: 2 } as const;

/** Parameters of {@link addVerifyCommands}. */
export type AddVerifyCommandsParameters = {
  program: Command;
  configFrom: (command: Command) => MycelConfig;
  integer: (name: string, minimum?: number, maximum?: number) => (value: string) => number;
};

async function readInput(path: string): Promise<unknown> {
  let text: string;
  try {
    text = path === "-" ? await readStdin() : await readFile(path, "utf8");
  } catch (cause) {
    throw new InvalidInputError(`cannot read the audit input ${path}`, {
      code: "invalid_audit_input",
      details: describeError(cause),
      hint: "give a JSON file with --input <file.json> (or - for standard input)",
    });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new InvalidInputError(`the audit input ${path} is not JSON`, {
      code: "invalid_audit_input",
      details: describeError(cause),
      hint: 'give the JSON body of an answer asked with `"mycel": {"include_evidence": true}` (for a stream, the JSON of the last event, without `data: `), or {modelHash, request, promptTokens, outputTokens, fingerprints, finishReason, receipt?}',
    });
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Adds `mycel audit`. */
export function addVerifyCommands(parameters: AddVerifyCommandsParameters) {
  const { program, configFrom, integer } = parameters;
  program
    .command("audit")
    .description(
      "audit an answer (every segment of it): re-evaluate it with the claimed model (from the local store) and check prompt, tokens, fingerprints, accounting and receipts; exit 0 pass, 1 fail, 2 bad input",
    )
    .option(
      "--input <file.json>",
      'the answer: its JSON as the API returned it with `"mycel": {"include_evidence": true}` (or the last event of a stream), or {modelHash, request, promptTokens, outputTokens, fingerprints, finishReason, receipt?} (- reads standard input)',
    )
    .option(
      "--threads <n>",
      "llama.cpp threads for the re-evaluation (default: every core)",
      integer("--threads", 1, 256),
    )
    .action(async (flags: { input?: string; threads?: number }, command: Command) => {
      if (!flags.input) {
        process.stderr.write(
          "error: give the answer to audit with --input <file.json> (- reads standard input)\n",
        );
        process.exitCode = auditExitCodes.badInput;
        return;
      }
      const inputPath = flags.input;
      const config = configFrom(command);
      const { auditInputsOf, combineSegmentVerdicts, createAuditor } = await import("../verify/index.ts");
      const { availableParallelism } = await import("node:os");
      let auditor: Awaited<ReturnType<typeof createAuditor>> | undefined;
      try {
        // One input per segment of the answer (one for the flat input); bad input stops here, before a model loads.
        const inputs = auditInputsOf(await readInput(inputPath));
        auditor = createAuditor({
          home: config.home,
          engineOptions: { threadsPerSequence: flags.threads ?? availableParallelism() },
        });
        const segments = [];
        for (const input of inputs) segments.push({ input, verdict: await auditor.audit(input) });
        // One segment prints its verdict as it is; several print {verdict, segments: [...]}.
        const [first, ...others] = segments;
        const result = first && others.length === 0 ? first.verdict : combineSegmentVerdicts(segments);
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        process.exitCode = result.verdict === "pass" ? auditExitCodes.pass : auditExitCodes.fail;
      } catch (error) {
        if (!(error instanceof InvalidInputError || error instanceof ModelNotFoundError)) throw error;
        process.stderr.write(`error: ${(error as MycelError).message}\n`);
        process.exitCode = auditExitCodes.badInput;
      } finally {
        await auditor?.close();
      }
    });
}
