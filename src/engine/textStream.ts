/** Streaming text helpers: incremental detokenization and stop-sequence matching. Pure code. */

/** Turns tokens into text deltas, holding back only the bytes of a character that is not complete yet. */
export type IncrementalDecoder = {
  push(token: number): string;
  flush(): string;
};

/** Decodes UTF-8 as WHATWG does: an invalid byte sequence becomes one U+FFFD, a leading BOM stays text. */
function utf8Decoder() {
  return new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
}

/**
 * Creates an {@link IncrementalDecoder} over each token's piece bytes. Bytes are assembled across token
 * boundaries: at most 3 bytes (a valid prefix of a character) wait for the next token; bytes that cannot
 * begin or continue a character become U+FFFD at once, and a valid character after them survives. The deltas
 * always add up to {@link decodeTokens} of the same tokens.
 */
export function createIncrementalDecoder(bytesOf: (token: number) => Uint8Array): IncrementalDecoder {
  const decoder = utf8Decoder();
  return {
    push: (token) => decoder.decode(bytesOf(token), { stream: true }),
    flush: () => decoder.decode(),
  };
}

/** The text of tokens: their piece bytes joined, decoded as UTF-8 (invalid bytes as U+FFFD). */
export function decodeTokens(tokens: readonly number[], bytesOf: (token: number) => Uint8Array): string {
  const pieces = tokens.map(bytesOf);
  const bytes = new Uint8Array(pieces.reduce((total, piece) => total + piece.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    bytes.set(piece, offset);
    offset += piece.length;
  }
  return utf8Decoder().decode(bytes);
}

/** Finds stop sequences in streamed text. Text that might begin a stop sequence is held back until it is decided. */
export type StopMatcher = {
  /** Adds text; returns what is safe to emit, and whether a stop sequence was found (its text is not emitted). */
  push(text: string): { emit: string; stopped: boolean };
  /** Releases held-back text at the end of generation. */
  flush(): string;
};

/** Creates a {@link StopMatcher}; with no stop sequences everything passes through at once. */
export function createStopMatcher(stops: readonly string[]): StopMatcher {
  const sequences = stops.filter((stop) => stop.length > 0);
  let held = "";
  return {
    push(text) {
      if (sequences.length === 0) return { emit: text, stopped: false };
      held += text;
      let first = -1;
      for (const stop of sequences) {
        const index = held.indexOf(stop);
        if (index !== -1 && (first === -1 || index < first)) first = index;
      }
      if (first !== -1) {
        const emit = held.slice(0, first);
        held = "";
        return { emit, stopped: true };
      }
      let keep = 0;
      for (const stop of sequences) {
        for (let length = Math.min(stop.length - 1, held.length); length > keep; length--) {
          if (held.endsWith(stop.slice(0, length))) {
            keep = length;
            break;
          }
        }
      }
      const emit = held.slice(0, held.length - keep);
      held = held.slice(held.length - keep);
      return { emit, stopped: false };
    },
    flush() {
      const rest = held;
      held = "";
      return rest;
    },
  };
}

/**
 * The end of a generation's text (an end-of-generation token, or the last token allowed): the decoder's held bytes
 * (an incomplete character, as U+FFFD) go through the stop matcher after the text it held, which is then released
 * unless they completed a stop sequence.
 */
export function finishText(
  decoder: IncrementalDecoder,
  stopMatcher: StopMatcher,
): { text: string; stopped: boolean } {
  const rest = stopMatcher.push(decoder.flush());
  return { text: rest.emit + (rest.stopped ? "" : stopMatcher.flush()), stopped: rest.stopped };
}

/**
 * The text a generation of `outputTokens` streams, exactly as Engine.generate streams it: a continuation's prefix
 * tokens go through the decoder and the stop matcher first (their text was streamed before; what they held carries
 * over); each token's bytes are decoded and stop-matched; a completed stop sequence ends the text before it (later
 * tokens add nothing); an end-of-generation token, or the end of the tokens, finishes it ({@link finishText}).
 * Receipts commit to the hash of this text, so it is part of the protocol: changing it changes what audits expect.
 */
export function streamedTextOf(parameters: {
  bytesOf: (token: number) => Uint8Array;
  isEndOfGeneration: (token: number) => boolean;
  prefixTokens: readonly number[];
  outputTokens: readonly number[];
  stops: readonly string[];
}): string {
  if (parameters.outputTokens.length === 0) return "";
  const decoder = createIncrementalDecoder(parameters.bytesOf);
  const stopMatcher = createStopMatcher(parameters.stops);
  for (const token of parameters.prefixTokens) stopMatcher.push(decoder.push(token));
  let text = "";
  for (const token of parameters.outputTokens) {
    if (parameters.isEndOfGeneration(token)) return text + finishText(decoder, stopMatcher).text;
    const matched = stopMatcher.push(decoder.push(token));
    text += matched.emit;
    if (matched.stopped) return text;
  }
  return text + finishText(decoder, stopMatcher).text;
}

/** How often a stream (SSE events, network chunks) sends when tokens come faster: ~60 updates a second. */
export const streamBatchIntervalMs = 16;

/** A {@link createDeltaBatcher}: push items as they come, flush at the end. */
export type DeltaBatcher<T> = {
  push(item: T): void;
  /** Hands over whatever is waiting now (call it before the stream's last event). */
  flush(): void;
  /** Drops whatever is waiting and stops the timer. */
  cancel(): void;
};

/**
 * Gathers items that come faster than one per `intervalMs` into one batch per interval: the first item goes
 * out at once, and so does every item that comes after a pause of `intervalMs`; faster ones wait at most
 * `intervalMs`. Each event costs a write, a syscall and work for the reader; at tens of thousands of events
 * a second that slows generation, while no reader shows more than ~60 updates a second anyway.
 */
export function createDeltaBatcher<T>(parameters: {
  intervalMs: number;
  /** A batch goes out as soon as it holds this many items. */
  maxItems: number;
  onBatch: (items: T[]) => void;
}): DeltaBatcher<T> {
  let items: T[] = [];
  let lastBatch = Number.NEGATIVE_INFINITY;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (items.length === 0) return;
    const batch = items;
    items = [];
    lastBatch = performance.now();
    parameters.onBatch(batch);
  };
  return {
    push(item) {
      items.push(item);
      const sinceBatch = performance.now() - lastBatch;
      if (sinceBatch >= parameters.intervalMs || items.length >= parameters.maxItems) flush();
      else timer ??= setTimeout(flush, parameters.intervalMs - sinceBatch);
    },
    flush,
    cancel() {
      clearTimeout(timer);
      timer = undefined;
      items = [];
    },
  };
}
