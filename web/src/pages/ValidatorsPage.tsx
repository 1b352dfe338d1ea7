/**
 * #/validators: the validator set and its stake, the epochs of score consensus (each validator's revealed scores
 * per provider and the stake-weighted consensus), provider standings, and slashing proposals.
 */
import type { EpochView, ValidatorsView } from "../../../src/explorer/types.ts";
import { Amount } from "../components/Amount.tsx";
import { Badge, type BadgeTone } from "../components/Badge.tsx";
import { Hex } from "../components/Hex.tsx";
import { NotScored } from "../components/NotScored.tsx";
import { EmptyNote, LoadState } from "../components/Status.tsx";
import { useToken } from "../explorerInfo.ts";
import { formatNumber, formatPercent, formatTime, isoTime, shortHex } from "../format.ts";
import { useJson } from "../useJson.ts";

/** Where an epoch stands, by the chain's clock (the server's `phase`). */
export type EpochState = EpochView["phase"];

/** An epoch's phase as the server computed it. */
export function epochState(epoch: EpochView): EpochState {
  return epoch.phase;
}

const epochTones: Record<EpochState, BadgeTone> = {
  committing: "info",
  revealing: "warn",
  finalizing: "warn",
  finalized: "good",
};

function bigRatio(part: string, whole: string): number {
  try {
    const denominator = BigInt(whole);
    if (denominator === 0n) return 0;
    return Number((BigInt(part) * 10_000n) / denominator) / 10_000;
  } catch {
    return Number.NaN;
  }
}

function ScoresMatrix(props: { epoch: EpochView; maxScore: number }) {
  const { epoch, maxScore } = props;
  const score = (value: number | undefined) => (value === undefined ? "—" : formatPercent(value / maxScore));
  if (epoch.providers.length === 0) return <EmptyNote>No provider was scored in this epoch.</EmptyNote>;
  return (
    <div class="table-scroll">
      <table class="compact matrix">
        <caption>Epoch {epoch.epoch}: scores by validator (rows) for each provider (columns)</caption>
        <thead>
          <tr>
            <th scope="col">Validator</th>
            {epoch.providers.map((provider) => (
              <th key={provider} scope="col" class="num" title={provider}>
                <span class="mono">{shortHex(provider)}</span>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {epoch.scores.length === 0 && (
            <tr>
              <td colSpan={epoch.providers.length + 1} class="muted">
                No validator has revealed scores yet.
              </td>
            </tr>
          )}
          {epoch.scores.map((row) => (
            <tr key={row.validator}>
              <th scope="row">
                <Hex value={row.validator} />
              </th>
              {epoch.providers.map((provider, index) => (
                <td key={provider} class="num">
                  {score(row.scores[index])}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr class="consensus">
            <th scope="row">Consensus</th>
            {epoch.providers.map((provider, index) => (
              <td key={provider} class="num">
                {epoch.consensus ? score(epoch.consensus[index]) : <span class="muted">pending</span>}
              </td>
            ))}
          </tr>
        </tfoot>
      </table>
    </div>
  );
}

/** The validators page. */
export function ValidatorsPage() {
  const token = useToken();
  const view = useJson<ValidatorsView>("/mycel/v1/validators", { refreshMs: 15_000 });
  const data = view.data;
  const newestRevealed = data?.epochs.find((epoch) => epoch.scores.length > 0)?.epoch;
  return (
    <section aria-labelledby="validators-heading">
      <h1 id="validators-heading">Validators</h1>
      {!data && (
        <LoadState loading={view.loading} error={view.error} what="validators" onRetry={view.reload} />
      )}
      {data && view.error && (
        <LoadState loading={false} error={view.error} what="the latest state" onRetry={view.reload} />
      )}
      {data && !data.chain && (
        <EmptyNote>No chain: there is no validator set, epochs or slashing without one.</EmptyNote>
      )}
      {data?.chain && (
        <>
          <dl class="stats">
            <div>
              <dt>Current epoch</dt>
              <dd class="num">{data.current_epoch ?? "—"}</dd>
            </div>
            <div>
              <dt>Validators</dt>
              <dd class="num">{data.validators.length}</dd>
            </div>
            <div>
              <dt>Maximum score</dt>
              <dd class="num">{formatNumber(data.max_score)}</dd>
            </div>
          </dl>

          <h2>Validator set</h2>
          {data.validators.length === 0 ? (
            <EmptyNote>No validator is registered.</EmptyNote>
          ) : (
            <div class="table-scroll">
              <table>
                <caption>Validators ({data.validators.length})</caption>
                <thead>
                  <tr>
                    <th scope="col">Validator</th>
                    <th scope="col" class="num">
                      Stake
                    </th>
                    <th scope="col" class="num">
                      Unbonding
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {data.validators.map((validator) => (
                    <tr key={validator.address}>
                      <th scope="row">
                        <Hex value={validator.address} />
                      </th>
                      <td class="num">
                        <Amount value={validator.stake} token={token} />
                      </td>
                      <td class="num">
                        <Amount value={validator.unbonding} token={token} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}

          <h2>Epochs</h2>
          {data.epochs.length === 0 ? (
            <EmptyNote>No epoch has been opened yet.</EmptyNote>
          ) : (
            <>
              <div class="table-scroll">
                <table>
                  <caption>Epochs, newest first</caption>
                  <thead>
                    <tr>
                      <th scope="col" class="num">
                        Epoch
                      </th>
                      <th scope="col">State</th>
                      <th scope="col">Ends</th>
                      <th scope="col" class="num">
                        Providers
                      </th>
                      <th scope="col" class="num">
                        Committed
                      </th>
                      <th scope="col" class="num">
                        Revealed
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.epochs.map((epoch) => {
                      const state = epochState(epoch);
                      return (
                        <tr key={epoch.epoch}>
                          <th scope="row" class="num">
                            {epoch.epoch}
                            {epoch.epoch === data.current_epoch && <span class="muted"> (current)</span>}
                          </th>
                          <td>
                            <Badge tone={epochTones[state]}>{state}</Badge>
                          </td>
                          <td>
                            <time dateTime={isoTime(epoch.ends_at)}>{formatTime(epoch.ends_at)}</time>
                          </td>
                          <td class="num">{epoch.providers.length}</td>
                          <td class="num">{epoch.committers.length}</td>
                          <td class="num">{epoch.revealed}</td>
                        </tr>
                      );
                    })}
                  </tbody>
                </table>
              </div>
              <h3>Scores per epoch</h3>
              {data.epochs.map((epoch) => (
                // Open: the current epoch, and the newest one with revealed scores (the last consensus).
                <details
                  key={epoch.epoch}
                  class="epoch"
                  open={epoch.epoch === data.epochs[0]?.epoch || epoch.epoch === newestRevealed}
                >
                  <summary>
                    Epoch {epoch.epoch} · {epochState(epoch)} · {epoch.scores.length} revealed
                  </summary>
                  <ScoresMatrix epoch={epoch} maxScore={data.max_score} />
                </details>
              ))}
            </>
          )}

          <h2>Provider standings</h2>
          {data.standings.length === 0 ? (
            <EmptyNote>No provider has a standing yet.</EmptyNote>
          ) : (
            <div class="table-scroll">
              <table>
                <caption>Provider standings on chain</caption>
                <thead>
                  <tr>
                    <th scope="col">Provider</th>
                    <th scope="col" class="num">
                      Reputation
                    </th>
                    <th scope="col" class="num">
                      Last score
                    </th>
                    <th scope="col" class="num">
                      Last epoch
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {data.standings.map((standing) => (
                    <tr key={standing.provider}>
                      <th scope="row">
                        <Hex value={standing.provider} />
                      </th>
                      <td class="num">
                        {standing.scored ? (
                          formatPercent(standing.reputation / data.max_score)
                        ) : (
                          <NotScored />
                        )}
                      </td>
                      <td class="num">
                        {standing.scored ? (
                          formatPercent(standing.last_score / data.max_score)
                        ) : (
                          <NotScored />
                        )}
                      </td>
                      <td class="num">{standing.scored ? standing.last_epoch : "—"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}

          <h2>Slashing proposals</h2>
          {data.slashes.length === 0 ? (
            <EmptyNote>No slashing has been proposed.</EmptyNote>
          ) : (
            <div class="table-scroll">
              <table>
                <caption>Slashing proposals</caption>
                <thead>
                  <tr>
                    <th scope="col" class="num">
                      Id
                    </th>
                    <th scope="col">Provider</th>
                    <th scope="col">Proposer</th>
                    <th scope="col" class="num">
                      Amount
                    </th>
                    <th scope="col" class="num">
                      Yes / total stake
                    </th>
                    <th scope="col">Deadline</th>
                    <th scope="col">Executed</th>
                  </tr>
                </thead>
                <tbody>
                  {data.slashes.map((slash) => (
                    <tr key={slash.id}>
                      <th scope="row" class="num">
                        {slash.id}
                      </th>
                      <td>
                        <Hex value={slash.provider} />
                      </td>
                      <td>
                        <Hex value={slash.proposer} />
                      </td>
                      <td class="num">
                        <Amount value={slash.amount} token={token} />
                      </td>
                      <td class="num">
                        <Amount value={slash.yes_stake} token={token} /> /{" "}
                        <Amount value={slash.total_stake} token={token} />{" "}
                        <span class="muted">
                          ({formatPercent(bigRatio(slash.yes_stake, slash.total_stake), 0)})
                        </span>
                      </td>
                      <td>
                        <time dateTime={isoTime(slash.deadline)}>{formatTime(slash.deadline)}</time>
                      </td>
                      <td>
                        {slash.executed ? (
                          <Badge tone="bad">executed</Badge>
                        ) : (
                          <Badge tone="neutral">no</Badge>
                        )}
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
