/** The `mycel` process's life: stop cleanly on SIGINT/SIGTERM, and never outlive the process that started it. */
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";

/** How often a process checks that its parent is still there. */
const parentCheckIntervalMs = 500;

/**
 * Calls `close` once on SIGINT or SIGTERM (or when `ended` resolves), then exits: 0 for a signal, 1 when a part ended
 * on its own. A close that takes longer than `limitMs` is cut short.
 */
export function stopOnSignal(parameters: {
  logger: Logger;
  close: () => Promise<void>;
  limitMs: number;
  /** Resolves with a reason when the work ended on its own (a devnet role exited). */
  ended?: Promise<string>;
}) {
  let stopping = false;
  const stop = async (reason: string, exitCode: number) => {
    if (stopping) return;
    stopping = true;
    if (exitCode === 0) parameters.logger.info("shutting down", { signal: reason });
    else parameters.logger.error(`${reason}: shutting down`);
    const force = setTimeout(() => process.exit(exitCode), parameters.limitMs);
    force.unref();
    await parameters
      .close()
      .catch((error) => parameters.logger.warn("shutdown failed", { error: describeError(error) }));
    process.exit(exitCode);
  };
  // `on`, not `once`: while a listener of ours remains, signal-exit (loaded by node-llama-cpp) does not re-raise the
  // signal, which would kill this process in the middle of its clean stop.
  process.on("SIGINT", () => void stop("SIGINT", 0));
  process.on("SIGTERM", () => void stop("SIGTERM", 0));
  void parameters.ended?.then((reason) => stop(reason, 1));
  return { stop: (reason: string) => stop(reason, 0) };
}

/**
 * Exits when the parent process goes away: with MYCEL_EXIT_WITH_PARENT=1 when the parent's end of stdin closes (roles
 * a devnet or a test started); with `watchParent` also when this process is handed to another parent (the devnet,
 * when npm or the shell that started it died). Long-running roles do not watch their parent: an operator may start
 * them with nohup and log out.
 */
export function exitWithParent(parameters: { logger: Logger; onGone?: () => void; watchParent?: boolean }) {
  const gone = () => {
    parameters.logger.info("parent process gone: exiting");
    if (parameters.onGone) parameters.onGone();
    else process.exit(0);
  };
  if (process.env.MYCEL_EXIT_WITH_PARENT === "1") {
    process.stdin.on("data", () => undefined);
    process.stdin.on("close", gone);
  }
  if (!parameters.watchParent) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      gone();
    }
  }, parentCheckIntervalMs);
  timer.unref();
}

/**
 * Keeps a role running when libp2p rejects a promise nobody awaits with a stream-state error (its connection monitor
 * aborts a connection already closing, and yamux refuses to write the reset): logged, not fatal, since one peer's
 * dying connection must not take the node down. Any other unhandled rejection still ends the process, as by default.
 */
export function survivePeerStreamErrors(parameters: { logger: Logger }) {
  process.on("unhandledRejection", (reason) => {
    if (reason instanceof Error && reason.name === "StreamStateError") {
      parameters.logger.warn("a libp2p stream error went unhandled: ignored", { error: reason.message });
      return;
    }
    throw reason;
  });
}
