/**
 * Token pieces: the bytes each token stands for, as llama.cpp's `llama_token_to_piece` gives them (lstrip 0,
 * special tokens not unparsed), computed from the vocabulary's text. Pure code.
 *
 * llama.cpp's `llama_detokenize` (what node-llama-cpp's `detokenize` calls) adds two things a server never does
 * to a generated answer: it cleans up tokenization spaces for the gpt-2 and llama-bpe pre-tokenizers (" ?" -> "?",
 * " 's" -> "'s") and, through N-API, turns every byte of an incomplete character into U+FFFD. llama.cpp's server
 * assembles each token's piece as it is, so Mycel does the same from these bytes.
 */

/** How a vocabulary spells its tokens: GPT-2 byte-level BPE, or SentencePiece (`▁` and `<0xXX>`) and its kin. */
export type PieceVocabularyType = "bpe" | "spm" | "wpm" | "ugm";

/** What a piece needs to know about one token (llama.cpp's token attributes). */
export type PieceTokenAttributes = {
  normal: boolean;
  control: boolean;
  unknown: boolean;
  userDefined: boolean;
  byte: boolean;
};

/** Parameters of {@link createPieceTable}. */
export type CreatePieceTableParameters = {
  vocabularyType: PieceVocabularyType;
  /** The token's text as the vocabulary stores it (GGUF `tokenizer.ggml.tokens`); undefined outside it. */
  tokenText: (token: number) => string | undefined;
  attributes: (token: number) => PieceTokenAttributes;
};

/** Each token's piece bytes, computed on first use and cached. */
export type PieceTable = { bytesOf(token: number): Uint8Array };

const empty = new Uint8Array(0);
const utf8 = new TextEncoder();

let gpt2ByteOf: Map<number, number> | undefined;

/** GPT-2's byte-level decoder: the printable code point standing for each byte, reversed. */
function gpt2ByteDecoder(): Map<number, number> {
  if (gpt2ByteOf) return gpt2ByteOf;
  const table = new Map<number, number>();
  let next = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable =
      (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
    table.set(printable ? byte : 256 + next++, byte);
  }
  gpt2ByteOf = table;
  return table;
}

/**
 * A byte-level BPE token's text back to its bytes (llama.cpp's `llama_decode_text`). A code point outside the
 * byte alphabet (which no converter writes) becomes `[UNK_BYTE_0x…]`, as llama.cpp spells it.
 */
export function decodeByteLevelText(text: string): Uint8Array {
  const table = gpt2ByteDecoder();
  const bytes: number[] = [];
  for (const character of text) {
    const byte = table.get(character.codePointAt(0) ?? -1);
    if (byte !== undefined) bytes.push(byte);
    else {
      const hex = [...utf8.encode(character)].map((value) => value.toString(16).padStart(2, "0")).join("");
      bytes.push(...utf8.encode(`[UNK_BYTE_0x${hex}${text}]`));
    }
  }
  return Uint8Array.from(bytes);
}

/** A SentencePiece byte token `<0xXX>` to its byte. */
function spmByteOf(text: string): number | undefined {
  const match = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
  return match?.[1] === undefined ? undefined : Number.parseInt(match[1], 16);
}

/** Creates a {@link PieceTable}: control and unknown tokens are empty, user-defined ones their text as it is. */
export function createPieceTable(parameters: CreatePieceTableParameters): PieceTable {
  const cache = new Map<number, Uint8Array>();
  const compute = (token: number): Uint8Array => {
    const text = parameters.tokenText(token);
    if (text === undefined) return empty;
    const attributes = parameters.attributes(token);
    if (attributes.control || attributes.unknown) return empty;
    if (attributes.userDefined) return utf8.encode(text);
    if (parameters.vocabularyType === "bpe") return attributes.normal ? decodeByteLevelText(text) : empty;
    if (attributes.normal) return utf8.encode(text.replaceAll("\u2581", " "));
    if (attributes.byte) {
      const byte = spmByteOf(text);
      return byte === undefined ? empty : Uint8Array.of(byte);
    }
    return empty;
  };
  return {
    bytesOf(token) {
      let bytes = cache.get(token);
      if (!bytes) {
        bytes = compute(token);
        cache.set(token, bytes);
      }
      return bytes;
    },
  };
}
