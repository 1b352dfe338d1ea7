/** Serves the built explorer (web/dist) at the gateway's root URL, with a strict content security policy. */
import { existsSync, readFileSync, statSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

/** Where `npm run build:web` writes the explorer. */
export const defaultExplorerDirectory = fileURLToPath(new URL("../../web/dist/", import.meta.url));

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/**
 * Only this origin's scripts, styles and data; no inline script, no framing. Styles set from script (CSSOM) are
 * allowed by CSP; style attributes in markup are not.
 */
export const explorerContentSecurityPolicy =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const securityHeaders = {
  "content-security-policy": explorerContentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/** Answers GET/HEAD for the explorer's files; false when `path` is not one of them. */
export function serveExplorerFile(parameters: {
  directory: string;
  method: string;
  path: string;
  /** The request's Accept-Encoding: text files go out gzipped when it names gzip. */
  acceptEncoding?: string | string[];
  response: ServerResponse;
}): boolean {
  const { directory, method, path, response } = parameters;
  if (method !== "GET" && method !== "HEAD") return false;
  const relative = path === "/" || path === "/index.html" ? "index.html" : path.slice(1);
  const isAsset = relative.startsWith("assets/");
  if (relative !== "index.html" && !isAsset && !/^[\w.-]+\.(svg|ico|png|txt)$/.test(relative)) return false;
  const indexFile = join(directory, "index.html");
  if (!existsSync(indexFile)) {
    if (relative !== "index.html") return false;
    const text =
      "The Mycel explorer is not built.\n\nRun `npm run build:web` (npm install does it too), then reload this page.\n" +
      "The JSON API under /mycel/v1/ and the OpenAI-compatible API under /v1/ work without it.\n";
    response.writeHead(503, { "content-type": "text/plain; charset=utf-8", ...securityHeaders });
    response.end(method === "HEAD" ? undefined : text);
    return true;
  }
  const file = normalize(join(directory, relative));
  if (!file.startsWith(normalize(directory).replace(/[\\/]?$/, sep))) return false;
  if (!existsSync(file) || !statSync(file).isFile()) return false;
  const type = contentTypes[extname(file)] ?? "application/octet-stream";
  const gzip = compressible(type) && /\bgzip\b/.test(String(parameters.acceptEncoding ?? ""));
  const body = gzip ? gzipped(file) : readFileSync(file);
  response.writeHead(200, {
    "content-type": type,
    "content-length": body.length,
    ...(gzip ? { "content-encoding": "gzip" } : {}),
    vary: "accept-encoding",
    // Asset names carry a content hash: cache them for good; the page itself is checked on every load.
    "cache-control": isAsset ? "public, max-age=31536000, immutable" : "no-cache",
    ...securityHeaders,
  });
  response.end(method === "HEAD" ? undefined : body);
  return true;
}

/** Text compresses about 3:1; images and fonts are compressed already. */
function compressible(type: string): boolean {
  return /^text\/|^application\/json|^image\/svg/.test(type);
}

/** Files gzipped once and kept while unchanged (the built app is small: about 85 KB before compression). */
const gzipCache = new Map<string, { modified: number; body: Buffer }>();

function gzipped(file: string): Buffer {
  const modified = statSync(file).mtimeMs;
  const cached = gzipCache.get(file);
  if (cached && cached.modified === modified) return cached.body;
  const body = gzipSync(readFileSync(file), { level: 9 });
  gzipCache.set(file, { modified, body });
  return body;
}
