/** Log levels, from the most to the least verbose. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Fields attached to one log line. Never put a secret here. */
export type LogFields = Record<string, unknown>;

/** A structured logger: one line per event, `text` for people or `json` for machines. */
export type Logger = {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
};

/** Parameters of {@link createLogger}. */
export type CreateLoggerParameters = {
  level?: LogLevel;
  format?: "text" | "json";
  /** Where lines go; defaults to stderr so that stdout stays clean for command output. */
  write?: (line: string) => void;
  fields?: LogFields;
};

function isLogLevel(value: string | undefined): value is LogLevel {
  return value !== undefined && value in levelRank;
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return /\s|"/.test(value) ? JSON.stringify(value) : value;
  if (value instanceof Error) return JSON.stringify(value.message);
  return JSON.stringify(value);
}

/** Creates a logger; level and format default to MYCEL_LOG_LEVEL and MYCEL_LOG_FORMAT, else `info` and `text`. */
export function createLogger(parameters: CreateLoggerParameters = {}): Logger {
  const envLevel = process.env.MYCEL_LOG_LEVEL;
  const level: LogLevel = parameters.level ?? (isLogLevel(envLevel) ? envLevel : "info");
  const format = parameters.format ?? (process.env.MYCEL_LOG_FORMAT === "json" ? "json" : "text");
  const write = parameters.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const baseFields = parameters.fields ?? {};

  const emit = (lineLevel: LogLevel, message: string, fields: LogFields = {}) => {
    if (levelRank[lineLevel] < levelRank[level]) return;
    const all = { ...baseFields, ...fields };
    if (format === "json") {
      write(JSON.stringify({ time: new Date().toISOString(), level: lineLevel, message, ...all }));
      return;
    }
    const rest = Object.entries(all)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => `${key}=${formatValue(value)}`)
      .join(" ");
    write(`${lineLevel.padEnd(5)} ${message}${rest ? ` ${rest}` : ""}`);
  };

  return {
    debug: (message, fields) => emit("debug", message, fields),
    info: (message, fields) => emit("info", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    error: (message, fields) => emit("error", message, fields),
    child: (fields) => createLogger({ level, format, write, fields: { ...baseFields, ...fields } }),
  };
}

/** A logger that drops everything (for tests and quiet library use). */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
