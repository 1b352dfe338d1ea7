/** The models the network serves now, as the gateway's provider table knows them: listed, and found by name or hash. */
import type { ApiModelInfo } from "../api/index.ts";
import { describeAvailable, ModelNotFoundError } from "../errors/index.ts";
import { capabilitiesOf, type ModelCapability } from "../protocol/index.ts";
import { defaultRoutingPolicy, type RoutingPolicy, unroutableReason } from "./eligibility.ts";
import type { KnownProvider, ProviderTable } from "./providerTable.ts";

/** The network's live models. */
export type Catalog = {
  /** Every model at least one routable provider serves (eligibility.ts), with its provider count and lowest prices. */
  models(): ApiModelInfo[];
  /** A model by hash, unique hash prefix (6+ hex digits) or name; throws ModelNotFoundError naming what is served. */
  find(nameOrHash: string): ApiModelInfo;
};

/** The smallest of some bigints (Math.min takes numbers only). */
function smallest(values: readonly bigint[]): bigint {
  let result = values[0] ?? 0n;
  for (const value of values) if (value < result) result = value;
  return result;
}

/** The tool-call format of a model when its providers that announce one agree (a model's template is in its file). */
function toolCallFormatOf(formats: ReadonlySet<string | undefined>): Pick<ApiModelInfo, "toolCallFormat"> {
  const [only] = formats;
  return formats.size === 1 && (only === "hermes" || only === "llama3-json") ? { toolCallFormat: only } : {};
}

/** Lists and finds models from the provider table: only what some provider the gateway would route to serves. */
export function createCatalog(parameters: { table: ProviderTable; policy?: RoutingPolicy }): Catalog {
  const { table } = parameters;
  const policy = parameters.policy ?? defaultRoutingPolicy;
  /** The models of providers routable now (and, with `pending`, of those whose registration is still being read). */
  function collect(pending: boolean): ApiModelInfo[] {
    const now = Date.now();
    const byHash = new Map<
      string,
      {
        name: string;
        contextSize: number;
        providers: KnownProvider[];
        capabilities: Set<ModelCapability>;
        toolCallFormats: Set<string | undefined>;
      }
    >();
    for (const provider of table.all()) {
      for (const model of provider.announcement.models) {
        const reason = unroutableReason(provider, { modelHash: model.hash, policy, now });
        if (reason !== undefined && !(pending && reason === "not_checked")) continue;
        const entry = byHash.get(model.hash) ?? {
          name: model.name,
          contextSize: model.context_size,
          providers: [],
          capabilities: new Set<ModelCapability>(),
          toolCallFormats: new Set<string | undefined>(),
        };
        entry.providers.push(provider);
        for (const capability of capabilitiesOf(model)) entry.capabilities.add(capability);
        if (model.tool_call_format) entry.toolCallFormats.add(model.tool_call_format);
        byHash.set(model.hash, entry);
      }
    }
    return [...byHash.entries()].map(([hash, entry]) => {
      const lowest = (field: "input" | "output") =>
        smallest(entry.providers.map((provider) => BigInt(provider.announcement.price[field])));
      return {
        name: entry.name,
        hash: hash.slice(2),
        contextLength: entry.contextSize,
        // Tool calls are parsed in the format the model's providers announce (requests with tools go only to
        // providers that announce tools); none, or two that disagree: no tools.
        ...toolCallFormatOf(entry.toolCallFormats),
        extra: {
          providers: entry.providers.length,
          /** What some provider of the model can do with it. */
          capabilities: [...entry.capabilities],
          lowest_price_per_million: {
            input: lowest("input").toString(),
            output: lowest("output").toString(),
          },
        },
      };
    });
  }

  const models = () => collect(false);

  function find(nameOrHash: string): ApiModelInfo {
    // A provider heard of a moment ago is found (its registration is read within milliseconds; the request waits
    // for it), though not listed: routing still requires what the policy requires.
    const served = collect(true);
    const query = nameOrHash.replace(/^(sha256:|0x)/i, "").toLowerCase();
    const byHash = served.filter(
      (model) =>
        model.hash === query ||
        (query.length >= 6 && /^[0-9a-f]+$/.test(query) && model.hash.startsWith(query)),
    );
    if (byHash.length === 1 && byHash[0]) return byHash[0];
    const byName = served
      .filter((model) => model.name === nameOrHash)
      .sort((a, b) => Number(b.extra?.providers ?? 0) - Number(a.extra?.providers ?? 0));
    if (byName[0]) return byName[0];
    const available = describeAvailable({
      query: nameOrHash,
      names: served.map((model) => model.name),
      label: "served on the network now",
    });
    const unroutable = table
      .all()
      .some((provider) =>
        provider.announcement.models.some(
          (model) => model.name === nameOrHash || model.hash.slice(2) === query,
        ),
      );
    throw new ModelNotFoundError(nameOrHash, {
      hint: unroutable
        ? "only providers this gateway does not route to announce it (not staked on chain with an offer matching their price, or above --max-price): GET /mycel/v1/providers lists them; --allow-unstaked routes to unstaked ones"
        : available
          ? `no provider on the network serves it; ${available} (GET /v1/models lists them)`
          : "no provider on the network serves any model yet: start one with `mycel provider --model <name|hash>` (see `mycel model list`), or check the gateway's --bootstrap",
    });
  }

  return { models, find };
}
