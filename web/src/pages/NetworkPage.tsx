/** #/network: the providers this gateway routes to, live, and charts of latency, throughput and price over time. */
import { useState } from "preact/hooks";
import type {
  ExplorerProvider,
  HistoryPoint,
  NetworkHistory,
  ProviderStatus,
} from "../../../src/explorer/types.ts";
import { Amount } from "../components/Amount.tsx";
import { Badge, type BadgeTone } from "../components/Badge.tsx";
import { Hex } from "../components/Hex.tsx";
import { type ChartSeries, LineChart, type SeriesStyle, seriesStyle } from "../components/LineChart.tsx";
import { NotScored } from "../components/NotScored.tsx";
import { EmptyNote, LoadState } from "../components/Status.tsx";
import { useExplorerEvent } from "../events.ts";
import { useExplorerInfo, useToken } from "../explorerInfo.ts";
import { amountToNumber, formatCompact, formatNumber, formatPercent, type Token } from "../format.ts";
import { useJson } from "../useJson.ts";

const statusTones: Record<ProviderStatus, BadgeTone> = {
  online: "good",
  busy: "warn",
  banned: "bad",
  untrusted: "bad",
  expired: "neutral",
};

/** The history to chart: the loaded points, then live ones, at most `capacity`. */
export function mergeHistory(
  loaded: readonly HistoryPoint[],
  live: readonly HistoryPoint[],
  capacity: number,
): HistoryPoint[] {
  const last = loaded.at(-1)?.t ?? Number.NEGATIVE_INFINITY;
  return [...loaded, ...live.filter((point) => point.t > last)].slice(-Math.max(1, capacity));
}

/** The network's own line (all providers together): darker than any provider's colour. */
const networkStyle: SeriesStyle = { color: "#1b1f24", dash: "6 3" };

/** Addresses in one order whatever their letter case (checksummed or not). */
const byAddress = (a: string, b: string) => {
  const [x, y] = [a.toLowerCase(), b.toLowerCase()];
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * Every provider's chart style, by lowercase address: colours in the order of the addresses (the providers listed
 * now and those in the history), so that a provider has the same colour in every chart and its legends.
 */
function providerStyles(
  providers: readonly { address: string }[],
  points: readonly HistoryPoint[],
): Map<string, SeriesStyle> {
  const addresses = new Set([
    ...providers.map((provider) => provider.address.toLowerCase()),
    ...points.flatMap((point) => point.providers.map((provider) => provider.address.toLowerCase())),
  ]);
  return new Map([...addresses].sort(byAddress).map((address, index) => [address, seriesStyle(index)]));
}

function providerSeries(
  points: readonly HistoryPoint[],
  styles: ReadonlyMap<string, SeriesStyle>,
  value: (provider: HistoryPoint["providers"][number]) => number | null,
): ChartSeries[] {
  const addresses = [
    ...new Set(points.flatMap((point) => point.providers.map((provider) => provider.address))),
  ].sort(byAddress);
  return addresses.map((address) => ({
    id: address,
    label: `${address.slice(0, 6)}…${address.slice(-4)}`,
    title: address,
    style: styles.get(address.toLowerCase()),
    points: points.map((point) => {
      const provider = point.providers.find((entry) => entry.address === address);
      return { t: point.t, v: provider ? value(provider) : null };
    }),
  }));
}

function ProviderTable(props: { providers: ExplorerProvider[]; token: Token | null | undefined }) {
  const { providers, token } = props;
  if (providers.length === 0)
    return (
      <EmptyNote>
        No provider is known yet: start one with <code>mycel provider --model …</code>.
      </EmptyNote>
    );
  return (
    <div class="table-scroll">
      <table class="sticky-first">
        <caption>
          <span class="sticky-caption">Providers ({providers.length})</span>
        </caption>
        <thead>
          <tr>
            <th scope="col">Provider</th>
            <th scope="col">Models</th>
            <th scope="col" class="num">
              In / 1M tokens
            </th>
            <th scope="col" class="num">
              Out / 1M tokens
            </th>
            <th scope="col" class="num">
              Latency
            </th>
            <th scope="col" class="num">
              Throughput
            </th>
            <th scope="col" class="num">
              Load
            </th>
            <th scope="col" class="num">
              Requests
            </th>
            <th scope="col" class="num">
              Reputation
            </th>
            <th scope="col" class="num">
              Stake
            </th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {providers.map((provider) => {
            const busy = Math.round(provider.load * provider.parallelism);
            return (
              <tr key={provider.address}>
                <th scope="row">
                  <Hex value={provider.address} />
                </th>
                <td>
                  {provider.models.length === 0 ? (
                    "—"
                  ) : (
                    <ul class="plain">
                      {provider.models.map((model) => (
                        <li
                          key={model.hash}
                          class="nowrap"
                          title={`${model.hash} · context ${model.context_size} tokens`}
                        >
                          {model.name}
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
                <td class="num">
                  <Amount value={provider.price_per_million.input} token={token} />
                </td>
                <td class="num">
                  <Amount value={provider.price_per_million.output} token={token} />
                </td>
                <td class="num">
                  {provider.latency_ms === null ? "—" : `${formatNumber(provider.latency_ms)} ms`}
                </td>
                <td class="num">
                  {provider.throughput_tps === null
                    ? "—"
                    : `${formatNumber(provider.throughput_tps, 1)} tok/s`}
                </td>
                <td
                  class="num"
                  title={`${formatPercent(provider.load, 0)} busy, ${provider.in_flight} in flight from this gateway`}
                >
                  {busy}/{provider.parallelism}
                  {provider.waiting > 0 && <span class="muted"> · {provider.waiting} waiting</span>}
                </td>
                <td class="num" title={`${provider.in_flight} in flight`}>
                  {formatNumber(provider.successes)} ok
                  {provider.failures > 0 && (
                    <span class="text-bad"> · {formatNumber(provider.failures)} failed</span>
                  )}
                </td>
                <td class="num">
                  {provider.reputation === null ? <NotScored /> : formatPercent(provider.reputation)}
                </td>
                <td class="num">
                  {provider.stake === null ? (
                    <span class="muted">—</span>
                  ) : (
                    <Amount value={provider.stake} token={token} />
                  )}
                </td>
                <td>
                  <Badge tone={statusTones[provider.status]}>{provider.status}</Badge>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** The network overview page. */
export function NetworkPage() {
  const info = useExplorerInfo();
  const token = useToken();
  const providers = useJson<{ object: "list"; data: ExplorerProvider[] }>("/mycel/v1/providers");
  const history = useJson<NetworkHistory>("/mycel/v1/network/history");
  const [liveProviders, setLiveProviders] = useState<ExplorerProvider[] | null>(null);
  const [livePoints, setLivePoints] = useState<HistoryPoint[]>([]);
  const capacity = history.data?.capacity ?? info?.history.capacity ?? 360;

  useExplorerEvent("providers", (data) => setLiveProviders(data));
  useExplorerEvent("history", (point) => setLivePoints((points) => [...points, point].slice(-capacity)));

  const rows = liveProviders ?? providers.data?.data;
  const points = mergeHistory(history.data?.points ?? [], livePoints, capacity);
  const latest = points.at(-1);
  const online = rows?.filter(
    (provider) => provider.status === "online" || provider.status === "busy",
  ).length;
  // Until the token is known (undefined) prices are not charted: raw units would jump to tokens a moment later.
  const symbol = token === undefined ? "…" : (token?.symbol ?? "units");
  const priceUnit = (value: number) => `${formatCompact(value)} ${symbol}`;
  const styles = providerStyles(rows ?? [], points);

  return (
    <section aria-labelledby="network-heading">
      <h1 id="network-heading">Network</h1>
      <dl class="stats">
        <div>
          <dt>Providers online</dt>
          <dd class="num">{rows ? `${online} of ${rows.length}` : "—"}</dd>
        </div>
        <div>
          <dt>Network throughput</dt>
          <dd class="num">{latest ? `${formatNumber(latest.tokens_per_second, 1)} tok/s` : "—"}</dd>
        </div>
        <div>
          <dt>Requests, last interval</dt>
          <dd class="num">{latest ? formatNumber(latest.requests) : "—"}</dd>
        </div>
        <div>
          <dt>Audit rate</dt>
          <dd class="num">{info ? formatPercent(info.audit.rate, 0) : "—"}</dd>
        </div>
      </dl>

      {!rows && (
        <LoadState
          loading={providers.loading}
          error={providers.error}
          what="providers"
          onRetry={providers.reload}
        />
      )}
      {rows && <ProviderTable providers={rows} token={token} />}
      {token === null && rows && rows.length > 0 && (
        <p class="note">No chain: prices are shown in the providers' smallest unit and nothing is paid.</p>
      )}

      <h2>Over time</h2>
      {history.error && !history.data ? (
        <LoadState
          loading={false}
          error={history.error}
          what="the network history"
          onRetry={history.reload}
        />
      ) : history.loading && !history.data ? (
        <LoadState loading={true} error={undefined} what="the network history" />
      ) : (
        <div class="charts">
          <LineChart
            title="Latency (time to first token)"
            description="Each provider's smoothed time to first token in milliseconds, as this gateway measured it."
            series={providerSeries(points, styles, (provider) => provider.latency_ms)}
            formatValue={(value) => `${formatNumber(value)} ms`}
            formatTick={formatCompact}
          />
          <LineChart
            title="Throughput (tokens per second)"
            description="Output tokens per second received by this gateway from the whole network, and each provider's streaming speed."
            series={[
              {
                id: "network",
                label: "network",
                title: "Network, all providers",
                style: networkStyle,
                points: points.map((point) => ({ t: point.t, v: point.tokens_per_second })),
              },
              ...providerSeries(points, styles, (provider) => provider.throughput_tps),
            ]}
            formatValue={(value) => `${formatNumber(value, 1)} tok/s`}
            formatTick={formatCompact}
          />
          <LineChart
            title={`Output price per million tokens (${symbol})`}
            description="Each provider's announced price for a million output tokens."
            series={providerSeries(points, styles, (provider) =>
              token === undefined ? null : amountToNumber(provider.price_output, token),
            )}
            formatValue={priceUnit}
            formatTick={formatCompact}
          />
        </div>
      )}
    </section>
  );
}
