/**
 * #/payments: the payment token, this gateway's side (budget, deposits, what it paid and had acknowledged), every
 * channel on chain, what each provider earned, and the latest settlements.
 */
import type { PaymentsView } from "../../../src/explorer/types.ts";
import { Amount } from "../components/Amount.tsx";
import { Badge, type BadgeTone } from "../components/Badge.tsx";
import { Hex } from "../components/Hex.tsx";
import { EmptyNote, LoadState } from "../components/Status.tsx";
import { formatNumber, formatTime, isoTime } from "../format.ts";
import { useJson } from "../useJson.ts";

const stateTones: Record<string, BadgeTone> = { open: "good", closing: "warn", closed: "neutral" };

/** The payments page. */
export function PaymentsPage() {
  const view = useJson<PaymentsView>("/mycel/v1/payments", { refreshMs: 15_000 });
  const data = view.data;
  const token = data?.token ?? null;
  return (
    <section aria-labelledby="payments-heading">
      <h1 id="payments-heading">Payments</h1>
      {!data && <LoadState loading={view.loading} error={view.error} what="payments" onRetry={view.reload} />}
      {data && view.error && (
        <LoadState loading={false} error={view.error} what="the latest payments" onRetry={view.reload} />
      )}
      {data && !data.chain && (
        <EmptyNote>
          No chain: this gateway runs without payments, so there are no channels or settlements.
        </EmptyNote>
      )}
      {data?.chain && (
        <>
          <dl class="stats">
            <div>
              <dt>Token</dt>
              <dd>
                {token ? (
                  <>
                    {token.symbol} <span class="muted">({token.decimals} decimals)</span>{" "}
                    <Hex value={token.address} />
                  </>
                ) : (
                  "—"
                )}
              </dd>
            </div>
            <div>
              <dt>Budget</dt>
              <dd>{data.gateway ? <Amount value={data.gateway.budget} token={token} /> : "—"}</dd>
            </div>
            <div>
              <dt>Deposited</dt>
              <dd>{data.gateway ? <Amount value={data.gateway.deposited} token={token} /> : "—"}</dd>
            </div>
            <div>
              <dt>Paid</dt>
              <dd>{data.gateway ? <Amount value={data.gateway.paid} token={token} /> : "—"}</dd>
            </div>
          </dl>

          <h2>This gateway's channels</h2>
          {!data.gateway ? (
            <EmptyNote>This gateway does not pay: it has no payment store.</EmptyNote>
          ) : data.gateway.channels.length === 0 ? (
            <EmptyNote>
              This gateway has opened no channel yet: it opens one with a provider on its first request.
            </EmptyNote>
          ) : (
            <div class="table-scroll">
              <table>
                <caption>Channels this gateway pays through ({data.gateway.channels.length})</caption>
                <thead>
                  <tr>
                    <th scope="col">Channel</th>
                    <th scope="col">Provider</th>
                    <th scope="col">State</th>
                    <th scope="col" class="num">
                      Deposit
                    </th>
                    <th scope="col" class="num">
                      Paid
                    </th>
                    <th scope="col" class="num">
                      Acknowledged
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {data.gateway.channels.map((channel) => (
                    <tr key={channel.channel_id}>
                      <th scope="row">
                        <Hex value={channel.channel_id} />
                      </th>
                      <td>
                        <Hex value={channel.provider} />
                      </td>
                      <td>
                        <Badge tone={stateTones[channel.state] ?? "neutral"}>{channel.state}</Badge>
                      </td>
                      <td class="num">
                        <Amount value={channel.deposit} token={token} />
                      </td>
                      <td class="num">
                        <Amount value={channel.paid} token={token} />
                      </td>
                      <td class="num">
                        <Amount value={channel.acknowledged} token={token} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}

          <h2>All channels on chain</h2>
          {data.channels.length === 0 ? (
            <EmptyNote>No payment channel is open to any registered provider.</EmptyNote>
          ) : (
            <div class="table-scroll">
              <table>
                <caption>Payment channels ({data.channels.length})</caption>
                <thead>
                  <tr>
                    <th scope="col">Channel</th>
                    <th scope="col">Client</th>
                    <th scope="col">Provider</th>
                    <th scope="col" class="num">
                      Deposit
                    </th>
                    <th scope="col" class="num">
                      Settled
                    </th>
                    <th scope="col">State</th>
                  </tr>
                </thead>
                <tbody>
                  {data.channels.map((channel) => (
                    <tr key={channel.channel_id} class={channel.mine ? "mine" : undefined}>
                      <th scope="row">
                        <Hex value={channel.channel_id} />
                      </th>
                      <td>
                        <Hex value={channel.client} />
                        {channel.mine && (
                          <>
                            {" "}
                            <Badge tone="info" title="this gateway is the channel's client">
                              mine
                            </Badge>
                          </>
                        )}
                      </td>
                      <td>
                        <Hex value={channel.provider} />
                      </td>
                      <td class="num">
                        <Amount value={channel.deposit} token={token} />
                      </td>
                      <td class="num">
                        <Amount value={channel.settled} token={token} />
                      </td>
                      <td>
                        <Badge tone={stateTones[channel.state] ?? "neutral"}>{channel.state}</Badge>
                        {channel.close_requested_at && (
                          <span class="muted"> since {formatTime(channel.close_requested_at)}</span>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}

          <h2>Provider earnings</h2>
          {data.providers.length === 0 ? (
            <EmptyNote>No provider is registered on chain.</EmptyNote>
          ) : (
            <div class="table-scroll">
              <table>
                <caption>What each registered provider has earned</caption>
                <thead>
                  <tr>
                    <th scope="col">Provider</th>
                    <th scope="col" class="num">
                      Earned (settled)
                    </th>
                    <th scope="col" class="num">
                      Deposits towards it
                    </th>
                    <th scope="col" class="num">
                      Channels
                    </th>
                    <th scope="col" class="num">
                      Stake
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {data.providers.map((provider) => (
                    <tr key={provider.address}>
                      <th scope="row">
                        <Hex value={provider.address} />
                      </th>
                      <td class="num">
                        <Amount value={provider.earned} token={token} />
                      </td>
                      <td class="num">
                        <Amount value={provider.deposits} token={token} />
                      </td>
                      <td class="num">{formatNumber(provider.channels)}</td>
                      <td class="num">
                        <Amount value={provider.stake} token={token} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}

          <h2>Recent settlements</h2>
          {data.settlements.length === 0 ? (
            <EmptyNote>No channel has been settled yet.</EmptyNote>
          ) : (
            <div class="table-scroll">
              <table>
                <caption>Latest settlements, newest first</caption>
                <thead>
                  <tr>
                    <th scope="col">Time</th>
                    <th scope="col">Provider</th>
                    <th scope="col">Client</th>
                    <th scope="col" class="num">
                      Paid
                    </th>
                    <th scope="col" class="num">
                      Cumulative
                    </th>
                    <th scope="col" class="num">
                      Block
                    </th>
                    <th scope="col">Transaction</th>
                  </tr>
                </thead>
                <tbody>
                  {data.settlements.map((settlement) => (
                    <tr key={`${settlement.transaction}/${settlement.channel_id}`}>
                      <td>
                        {settlement.time ? (
                          <time dateTime={isoTime(settlement.time)}>{formatTime(settlement.time)}</time>
                        ) : (
                          <span class="muted">—</span>
                        )}
                      </td>
                      <th scope="row">
                        <Hex value={settlement.provider} />
                      </th>
                      <td>
                        <Hex value={settlement.client} />
                      </td>
                      <td class="num">
                        <Amount value={settlement.paid} token={token} />
                      </td>
                      <td class="num">
                        <Amount value={settlement.cumulative} token={token} />
                      </td>
                      <td class="num">{formatNumber(settlement.block)}</td>
                      <td>
                        <Hex value={settlement.transaction} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}
