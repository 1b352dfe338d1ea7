/** Where the keystore password comes from: MYCEL_PASSWORD, else a prompt on the terminal that does not echo. */
import { StringDecoder } from "node:string_decoder";
import { InvalidInputError } from "../errors/index.ts";
import { PasswordRequiredError, PromptCancelledError } from "./errors.ts";

/** Parameters of {@link resolvePassword}. */
export type ResolvePasswordParameters = {
  /** The environment to read MYCEL_PASSWORD from; defaults to `process.env`. */
  env?: Record<string, string | undefined>;
  /** Asks the user when MYCEL_PASSWORD is unset (the CLI passes {@link promptPassword}). */
  prompt?: () => Promise<string>;
};

/** Returns MYCEL_PASSWORD when it is set and non-empty, else asks `prompt`; throws {@link PasswordRequiredError} when neither gives one. */
export async function resolvePassword(parameters: ResolvePasswordParameters = {}): Promise<string> {
  const env = parameters.env ?? process.env;
  const fromEnv = env.MYCEL_PASSWORD;
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  if (!parameters.prompt) throw new PasswordRequiredError();
  const typed = await parameters.prompt();
  if (typed === "") {
    throw new InvalidInputError("the password typed was empty", {
      param: "password",
      hint: "type a non-empty password, or set MYCEL_PASSWORD",
    });
  }
  return typed;
}

/** The streams {@link promptPassword} uses; tests pass fakes. */
export type PromptPasswordOptions = {
  /** Defaults to `process.stdin`. */
  input?: NodeJS.ReadStream;
  /** Where the question goes; defaults to `process.stderr`, so that stdout stays clean. */
  output?: NodeJS.WritableStream;
};

/**
 * Asks `question` on the terminal and reads a line without echoing it (raw mode). Throws
 * {@link PasswordRequiredError} when stdin is not a terminal: set MYCEL_PASSWORD there instead.
 */
export function promptPassword(question: string, options: PromptPasswordOptions = {}): Promise<string> {
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stderr;
  if (!input.isTTY) return Promise.reject(new PasswordRequiredError());

  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder("utf8");
    const wasRaw = input.isRaw;
    let typed = "";
    const finish = (error?: Error) => {
      input.off("data", onData);
      input.off("end", onEnd);
      input.setRawMode(wasRaw);
      input.pause();
      output.write("\n");
      if (error) reject(error);
      else resolve(typed);
    };
    const onEnd = () => finish();
    const onData = (chunk: Buffer | string) => {
      const text = typeof chunk === "string" ? chunk : decoder.write(chunk);
      for (const character of text) {
        switch (character) {
          case "\r":
          case "\n":
          case "\u0004": // Ctrl-D
            finish();
            return;
          case "\u0003": // Ctrl-C
            finish(new PromptCancelledError());
            return;
          case "\u007f": // Backspace
          case "\b":
            typed = Array.from(typed).slice(0, -1).join("");
            break;
          case "\u0015": // Ctrl-U: erase the line
            typed = "";
            break;
          default:
            if (character >= " ") typed += character;
        }
      }
    };
    output.write(question);
    input.setRawMode(true);
    input.on("data", onData);
    input.on("end", onEnd);
    input.resume();
  });
}
