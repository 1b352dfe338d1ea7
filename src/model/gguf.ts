/** GGUF v3 writing: the file format llama.cpp loads. Pure code, no I/O. */

/** GGUF metadata value types (gguf.h `gguf_type`). */
export const GgufValueType = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

/** ggml tensor types the writer can produce. */
export const GgmlTensorType = { f32: 0, f16: 1, q8_0: 8 } as const;
export type GgmlTensorTypeName = keyof typeof GgmlTensorType;

/** One metadata entry. Arrays hold values of a single scalar type. */
export type GgufMetadataEntry =
  | { key: string; type: "uint32" | "int32" | "float32" | "uint64"; value: number }
  | { key: string; type: "bool"; value: boolean }
  | { key: string; type: "string"; value: string }
  | { key: string; type: "array"; itemType: "string"; value: readonly string[] }
  | { key: string; type: "array"; itemType: "int32" | "float32"; value: readonly number[] };

/** One tensor: `dims` in ggml order (dims[0] is the contiguous row length), data already encoded. */
export type GgufTensor = {
  name: string;
  dims: readonly number[];
  type: GgmlTensorTypeName;
  data: Uint8Array;
};

/** Parameters of {@link encodeGguf}. */
export type EncodeGgufParameters = {
  metadata: readonly GgufMetadataEntry[];
  tensors: readonly GgufTensor[];
  /** Data alignment; llama.cpp's default is 32. */
  alignment?: number;
};

const textEncoder = new TextEncoder();

class ByteWriter {
  private chunks: Uint8Array[] = [];
  length = 0;

  bytes(data: Uint8Array) {
    this.chunks.push(data);
    this.length += data.length;
  }
  private view(size: number, fill: (view: DataView) => void) {
    const buffer = new Uint8Array(size);
    fill(new DataView(buffer.buffer));
    this.bytes(buffer);
  }
  u32(value: number) {
    this.view(4, (v) => v.setUint32(0, value, true));
  }
  i32(value: number) {
    this.view(4, (v) => v.setInt32(0, value, true));
  }
  f32(value: number) {
    this.view(4, (v) => v.setFloat32(0, value, true));
  }
  u64(value: number) {
    this.view(8, (v) => v.setBigUint64(0, BigInt(value), true));
  }
  string(value: string) {
    const encoded = textEncoder.encode(value);
    this.u64(encoded.length);
    this.bytes(encoded);
  }
  padTo(alignment: number) {
    const padding = (alignment - (this.length % alignment)) % alignment;
    if (padding > 0) this.bytes(new Uint8Array(padding));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

function writeScalar(writer: ByteWriter, type: "uint32" | "int32" | "float32" | "uint64", value: number) {
  if (type === "uint32") writer.u32(value);
  else if (type === "int32") writer.i32(value);
  else if (type === "float32") writer.f32(value);
  else writer.u64(value);
}

function writeEntry(writer: ByteWriter, entry: GgufMetadataEntry) {
  writer.string(entry.key);
  if (entry.type === "array") {
    writer.u32(GgufValueType.array);
    writer.u32(GgufValueType[entry.itemType]);
    writer.u64(entry.value.length);
    for (const item of entry.value) {
      if (typeof item === "string") writer.string(item);
      else writeScalar(writer, entry.itemType as "int32" | "float32", item);
    }
    return;
  }
  writer.u32(GgufValueType[entry.type]);
  if (entry.type === "string") writer.string(entry.value);
  else if (entry.type === "bool") writer.bytes(Uint8Array.of(entry.value ? 1 : 0));
  else writeScalar(writer, entry.type, entry.value);
}

/** Encodes a complete GGUF v3 file (header, metadata, tensor infos, aligned tensor data). */
export function encodeGguf(parameters: EncodeGgufParameters): Uint8Array {
  const alignment = parameters.alignment ?? 32;
  const writer = new ByteWriter();
  writer.bytes(textEncoder.encode("GGUF"));
  writer.u32(3);
  writer.u64(parameters.tensors.length);
  writer.u64(parameters.metadata.length);
  for (const entry of parameters.metadata) writeEntry(writer, entry);

  let dataOffset = 0;
  const offsets: number[] = [];
  for (const tensor of parameters.tensors) {
    offsets.push(dataOffset);
    dataOffset += tensor.data.length;
    dataOffset += (alignment - (dataOffset % alignment)) % alignment;
  }
  parameters.tensors.forEach((tensor, index) => {
    writer.string(tensor.name);
    writer.u32(tensor.dims.length);
    for (const dim of tensor.dims) writer.u64(dim);
    writer.u32(GgmlTensorType[tensor.type]);
    writer.u64(offsets[index] ?? 0);
  });
  writer.padTo(alignment);
  for (const tensor of parameters.tensors) {
    writer.bytes(tensor.data);
    writer.padTo(alignment);
  }
  return writer.concat();
}

const float32Scratch = new Float32Array(1);
const uint32Scratch = new Uint32Array(float32Scratch.buffer);

/** Converts a number to IEEE 754 half-precision bits, rounding to nearest even (as ggml does). */
export function float32ToFloat16Bits(value: number): number {
  float32Scratch[0] = value;
  const bits = uint32Scratch[0] ?? 0;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  let halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    const halfMantissa = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const rounded = remainder > halfway || (remainder === halfway && (halfMantissa & 1) === 1);
    return sign | (halfMantissa + (rounded ? 1 : 0));
  }
  let halfMantissa = mantissa >>> 13;
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (halfMantissa & 1) === 1)) {
    halfMantissa += 1;
    if (halfMantissa === 0x400) {
      halfMantissa = 0;
      halfExponent += 1;
      if (halfExponent >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (halfExponent << 10) | halfMantissa;
}

/** Converts IEEE 754 half-precision bits back to a number. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Q8_0 block: 32 values share one f16 scale; each value is an int8. */
export const q8BlockSize = 32;

/** Encodes float values as ggml tensor data of the given type. Q8_0 needs a length divisible by 32. */
export function encodeTensorData(values: Float32Array, type: GgmlTensorTypeName): Uint8Array {
  if (type === "f32")
    return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  if (type === "f16") {
    const out = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i] ?? 0);
    return new Uint8Array(out.buffer);
  }
  if (values.length % q8BlockSize !== 0) {
    throw new RangeError(`q8_0 needs a multiple of ${q8BlockSize} values, got ${values.length}`);
  }
  const blocks = values.length / q8BlockSize;
  const out = new Uint8Array(blocks * (2 + q8BlockSize));
  const view = new DataView(out.buffer);
  for (let block = 0; block < blocks; block++) {
    const start = block * q8BlockSize;
    let maxAbs = 0;
    for (let i = 0; i < q8BlockSize; i++) maxAbs = Math.max(maxAbs, Math.abs(values[start + i] ?? 0));
    const scale = maxAbs / 127;
    const inverse = scale === 0 ? 0 : 1 / scale;
    const base = block * (2 + q8BlockSize);
    view.setUint16(base, float32ToFloat16Bits(scale), true);
    for (let i = 0; i < q8BlockSize; i++) {
      const scaled = (values[start + i] ?? 0) * inverse;
      const quantized = Math.sign(scaled) * Math.round(Math.abs(scaled));
      view.setInt8(base + 2 + i, Math.max(-127, Math.min(127, quantized)));
    }
  }
  return out;
}
