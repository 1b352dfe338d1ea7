/**
 * Gas benchmark: what Mycel's contracts cost on a real anvil, in one run. (1) gas per operation of every
 * contract; (2) settling 1,000 requests through one payment channel (one settle of the last cumulative
 * voucher) vs paying each request with its own ERC-20 transfer; (3) EpochConsensus at its bounds: 64
 * validators scoring 256 providers (commit, reveal, finalize), with 16 x 64 for comparison. Run with
 * `npm run bench:gas`.
 */
import {
  type Address,
  createTestClient,
  createWalletClient,
  encodeFunctionData,
  type Hex,
  http,
  keccak256,
  parseEther,
  parseEventLogs,
  type TransactionReceipt,
  TransactionReceiptNotFoundError,
  toHex,
} from "viem";
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import {
  type AnvilProcess,
  addProviderStake,
  anvilDeployerKey,
  type ChainConnection,
  commitScores,
  connectChain,
  type Deployments,
  deployMycel,
  deploymentVoucherDomain,
  devnetDeployParameters,
  epochConsensusAbi,
  finalizeEpoch,
  fundRewards,
  mycelTokenAbi,
  openChannel,
  type ProviderOffer,
  proposeSlash,
  providerRegistryAbi,
  registerModel,
  registerProvider,
  registerValidator,
  requestChannelClose,
  requestProviderUnbond,
  revealScores,
  type SendContractTransactionReturnType,
  scoreCommitment,
  sendContractTransaction,
  settleVoucher,
  startAnvil,
  type TransactionReport,
  topUpChannel,
  voteSlash,
  withdrawChannel,
  withdrawProviderStake,
  withSigner,
} from "../../src/chain/index.ts";
import { signVoucher } from "../../src/protocol/index.ts";
import { formatTable, median, roundUp, verdict } from "../shared/report.ts";

/** Requests paid through one channel (section 2). */
const requests = 1_000;
const requestsText = requests.toLocaleString("en-US");
/** EpochConsensus's bounds (MAX_VALIDATORS, MAX_PROVIDERS) and the smaller epoch for comparison. */
const bound = { validators: 64, providers: 256 };
const small = { validators: 16, providers: 64 };
/** Every transaction must fit EIP-7825's per-transaction cap (2^24 gas), below typical 30M+ block limits. */
const targets = { settleGasPerRequest: 100, transactionGas: 2n ** 24n };
/** Anvil's block gas limit: far above any real chain's, so an oversized transaction is measured, not refused. */
const anvilGasLimit = 1_000_000_000n;
/** Transactions sent at once from different keys in the bulk phases (the same key always sends in order). */
const parallelSenders = 8;
/** EIP-7825 (Osaka): the per-transaction gas cap of chains that adopt it. */
const osakaTransactionCap = 2n ** 24n;
/** Per-request RPC timeout of the bench's own clients. */
const rpcTimeoutMs = 300_000;

const runStarted = performance.now();
let anvil: AnvilProcess | undefined;

function progress(message: string) {
  process.stderr.write(`[gas ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

const keyOf = (label: string): Hex => keccak256(toHex(`mycel-bench-gas:${label}`));

/** A small deterministic PRNG (mulberry32): the same prices and scores every run. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const between = (next: () => number, low: number, high: number) =>
  low + Math.floor(next() * (high - low + 1));

/** Every mined transaction of the run: how many, and the largest. */
const tally = { transactions: 0, gas: 0n, largest: { gas: 0n, action: "" } };
function count(action: string, gasUsed: bigint) {
  tally.transactions += 1;
  tally.gas += gasUsed;
  if (gasUsed > tally.largest.gas) tally.largest = { gas: gasUsed, action };
}
const onTransaction = (report: TransactionReport) => count(report.action, report.gasUsed);

/**
 * The chain: anvil, its clients, and a fast path for bulk transactions (signed here with a fixed gas limit and
 * sent raw, no simulation or estimate; receipts fetched afterwards). Single measured operations go through
 * src/chain's actions instead, as the CLI sends them.
 */
type Chain = Awaited<ReturnType<typeof openChain>>;

async function openChain(running: AnvilProcess) {
  // The deployer also finalizes: at 64 x 256, simulating and estimating finalize (a binary search of whole
  // executions) takes more than connectChain's default 10 s per request on a busy 2-core machine.
  const deployer = await connectChain({
    rpcUrl: running.rpcUrl,
    privateKey: anvilDeployerKey,
    timeoutMs: rpcTimeoutMs,
  });
  const transport = http(running.rpcUrl, { timeout: rpcTimeoutMs });
  const testClient = createTestClient({ mode: "anvil", chain: deployer.chain, transport });
  const raw = createWalletClient({ chain: deployer.chain, transport });
  const { publicClient } = deployer;
  const block = await publicClient.getBlock();
  // The base fee only falls on this chain (no block is half full), so twice today's covers every later block.
  const maxFeePerGas = 2n * (block.baseFeePerGas ?? 1_000_000_000n) + 1_000_000_000n;
  const nonces = new Map<Address, number>();

  type Pending = { hash: Hex; action: string; gas: bigint };
  /** Sends one transaction from `account` with the next nonce; returns without waiting for it to be mined. */
  async function send(
    account: PrivateKeyAccount,
    call: { to: Address; data: Hex; gas: bigint; action: string },
  ) {
    let nonce = nonces.get(account.address);
    if (nonce === undefined)
      nonce = await publicClient.getTransactionCount({ address: account.address, blockTag: "pending" });
    nonces.set(account.address, nonce + 1);
    const serializedTransaction = await account.signTransaction({
      type: "eip1559",
      chainId: running.chainId,
      nonce,
      to: call.to,
      data: call.data,
      gas: call.gas,
      maxFeePerGas,
      maxPriorityFeePerGas: 1n,
    });
    const hash = await raw.sendRawTransaction({ serializedTransaction });
    return { hash, action: call.action, gas: call.gas } satisfies Pending;
  }

  /** Waits for a sent transaction; a revert throws with the reason the same call gives now. */
  async function mined(pending: Pending): Promise<TransactionReceipt> {
    const deadline = performance.now() + rpcTimeoutMs;
    for (;;) {
      try {
        const receipt = await publicClient.getTransactionReceipt({ hash: pending.hash });
        count(pending.action, receipt.gasUsed);
        if (receipt.status !== "success") {
          const transaction = await publicClient.getTransaction({ hash: pending.hash });
          const reason = await publicClient
            .call({ account: transaction.from, to: transaction.to, data: transaction.input })
            .then(
              () => "the same call succeeds now",
              (error: Error) => error.message.split("\n")[0],
            );
          throw new Error(
            `${pending.action} reverted (${pending.hash}, ${receipt.gasUsed} of ${pending.gas} gas): ${reason}`,
          );
        }
        return receipt;
      } catch (error) {
        if (!(error instanceof TransactionReceiptNotFoundError)) throw error;
        if (performance.now() > deadline)
          throw new Error(`${pending.action} was not mined within ${rpcTimeoutMs / 1000} s`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  }

  /** Runs `job` for every item, `parallelSenders` at a time, with progress lines. */
  async function inBatches<T, R>(
    label: string,
    items: readonly T[],
    job: (item: T, index: number) => Promise<R>,
  ) {
    const results: R[] = [];
    let reported = 0;
    for (let start = 0; start < items.length; start += parallelSenders) {
      const chunk = items.slice(start, start + parallelSenders);
      results.push(...(await Promise.all(chunk.map((item, offset) => job(item, start + offset)))));
      if (results.length - reported >= 64 || results.length === items.length) {
        progress(`${label}: ${results.length}/${items.length}`);
        reported = results.length;
      }
    }
    return results;
  }

  async function now() {
    return (await publicClient.getBlock()).timestamp;
  }
  /** Mines a block at `timestamp` (later blocks follow from it). */
  async function jumpTo(timestamp: bigint) {
    const latest = await now();
    if (timestamp <= latest) return;
    await testClient.setNextBlockTimestamp({ timestamp });
    await testClient.mine({ blocks: 1 });
  }

  const deployerAccount = privateKeyToAccount(anvilDeployerKey);
  /** The deployer's next fast send must re-read its nonce (src/chain's actions sent in between). */
  const resyncDeployer = () => nonces.delete(deployerAccount.address);

  return {
    deployer,
    deployerAccount,
    publicClient,
    testClient,
    send,
    mined,
    inBatches,
    now,
    jumpTo,
    resyncDeployer,
  };
}

/** Deploys a Mycel instance (optionally on an existing token) with the devnet parameters. */
async function deploy(chain: Chain, token?: Address) {
  chain.resyncDeployer();
  return deployMycel(chain.deployer, { token, parameters: devnetDeployParameters, onTransaction });
}

/** Gives accounts ether (anvil_setBalance) and mints each `tokens` MYC from the deployer, pipelined. */
async function fund(chain: Chain, deployments: Deployments, accounts: readonly Address[], tokens: bigint) {
  chain.resyncDeployer();
  const pending = [];
  for (const [index, address] of accounts.entries()) {
    await chain.testClient.setBalance({ address, value: parseEther("1000") });
    pending.push(
      await chain.send(chain.deployerAccount, {
        to: deployments.contracts.token,
        data: encodeFunctionData({ abi: mycelTokenAbi, functionName: "mint", args: [address, tokens] }),
        gas: 100_000n,
        action: "mint",
      }),
    );
    if ((index + 1) % 128 === 0) progress(`funding: ${index + 1}/${accounts.length} accounts`);
  }
  for (const entry of pending) await chain.mined(entry);
  chain.resyncDeployer();
}

/** An account that signs with its own key through src/chain (for the single measured operations). */
async function actor(chain: Chain, label: string) {
  const privateKey = keyOf(label);
  // Same chain and clients as the deployer (and its long RPC timeout), signing with this key.
  const connection = withSigner(chain.deployer, privateKey);
  return { label, privateKey, address: privateKeyToAccount(privateKey).address, connection };
}
type Actor = Awaited<ReturnType<typeof actor>>;

const approve = (connection: ChainConnection, deployments: Deployments, spender: Address, amount: bigint) =>
  sendContractTransaction(connection, {
    address: deployments.contracts.token,
    abi: mycelTokenAbi,
    functionName: "approve",
    args: [spender, amount],
    action: `approve ${spender}`,
    onTransaction,
  });

const transfer = (connection: ChainConnection, deployments: Deployments, to: Address, amount: bigint) =>
  sendContractTransaction(connection, {
    address: deployments.contracts.token,
    abi: mycelTokenAbi,
    functionName: "transfer",
    args: [to, amount],
    action: `transfer ${amount} to ${to}`,
    onTransaction,
  });

const readConsensus = (chain: Chain, deployments: Deployments) => ({
  epochEnd: (epoch: bigint) =>
    chain.publicClient.readContract({
      address: deployments.contracts.epochConsensus,
      abi: epochConsensusAbi,
      functionName: "epochEnd",
      args: [epoch],
    }),
  currentEpoch: () =>
    chain.publicClient.readContract({
      address: deployments.contracts.epochConsensus,
      abi: epochConsensusAbi,
      functionName: "currentEpoch",
    }),
});

/** Moves chain time to the first second of the next epoch; returns that epoch. */
async function startNextEpoch(chain: Chain, deployments: Deployments) {
  const read = readConsensus(chain, deployments);
  const current = await read.currentEpoch();
  await chain.jumpTo(await read.epochEnd(current));
  return current + 1n;
}

const benchModel = {
  name: "bench-llama-3.2-1b-instruct-q4_k_m",
  metadataUri: "hf://mycel-bench/llama-3.2-1b-instruct-gguf/llama-3.2-1b-instruct-q4_k_m.gguf",
  license: "Apache-2.0",
};
const offerOf = (modelHash: Hex): ProviderOffer => ({
  modelHash,
  inputPricePerMillion: parseEther("0.5"),
  outputPricePerMillion: parseEther("1.5"),
});
/** A libp2p-like Ed25519 peer id (52 characters, like "12D3KooW..."). */
const peerIdOf = (label: string) => `12D3KooW${keyOf(`peer:${label}`).slice(2, 46)}`;

type Row = [string, bigint];
const gasRow = (label: string, sent: { gasUsed: bigint }): Row => [label, sent.gasUsed];

/** Section 1: every operation once, through src/chain's actions, on a small deployment. */
async function measureOperations(chain: Chain, deployments: Deployments) {
  const rows: Row[] = [];
  const { contracts } = deployments;
  const minimumStake = parseEther("100");
  const [publisher, providerA, providerB, client, stranger, ...validators] = await Promise.all(
    ["publisher", "provider-a", "provider-b", "client", "stranger", "v1", "v2", "v3", "v4"].map((label) =>
      actor(chain, `ops:${label}`),
    ),
  );
  if (!publisher || !providerA || !providerB || !client || !stranger) throw new Error("unreachable");
  const [v1, v2, v3] = validators as [Actor, Actor, Actor, Actor];
  await fund(
    chain,
    deployments,
    [publisher, providerA, providerB, client, ...validators].map((entry) => entry.address),
    parseEther("10000"),
  );
  // The deployer funds the reward pool.
  await fund(chain, deployments, [chain.deployerAccount.address], parseEther("10000"));
  await chain.testClient.setBalance({ address: stranger.address, value: parseEther("1000") });

  rows.push(
    gasRow(
      "MycelToken.approve (allowance was zero)",
      await approve(client.connection, deployments, stranger.address, 1n),
    ),
  );
  rows.push(
    gasRow(
      "MycelToken.transfer (recipient held none)",
      await transfer(client.connection, deployments, stranger.address, parseEther("1")),
    ),
  );
  rows.push(
    gasRow(
      "MycelToken.transfer (recipient holds some)",
      await transfer(client.connection, deployments, stranger.address, parseEther("1")),
    ),
  );

  const baseHash = keccak256(toHex("bench:base-model"));
  const quantHash = keccak256(toHex("bench:quantized-model"));
  rows.push(
    gasRow(
      "ModelRegistry.register (no parent; 34 B name, 79 B URI)",
      await registerModel(publisher.connection, {
        deployments,
        modelHash: baseHash,
        name: "bench-llama-3.2-1b-instruct-f16",
        metadataUri: benchModel.metadataUri.replace("q4_k_m", "f16"),
        license: benchModel.license,
        onTransaction,
      }),
    ),
  );
  rows.push(
    gasRow(
      "ModelRegistry.register (one parent: quantize)",
      await registerModel(publisher.connection, {
        deployments,
        modelHash: quantHash,
        ...benchModel,
        parents: [{ modelHash: baseHash, relation: "quantize" }],
        onTransaction,
      }),
    ),
  );

  await approve(providerA.connection, deployments, contracts.providerRegistry, minimumStake);
  rows.push(
    gasRow(
      "ProviderRegistry.register (1 offer, minimum stake)",
      await registerProvider(providerA.connection, {
        deployments,
        peerId: peerIdOf("ops:provider-a"),
        offers: [offerOf(quantHash)],
        stake: minimumStake,
        onTransaction,
      }),
    ),
  );
  await registerProvider(providerB.connection, {
    deployments,
    peerId: peerIdOf("ops:provider-b"),
    offers: [offerOf(quantHash), offerOf(baseHash)],
    stake: minimumStake,
    onTransaction,
  });
  await approve(providerA.connection, deployments, contracts.providerRegistry, parseEther("50"));
  rows.push(
    gasRow(
      "ProviderRegistry.addStake",
      await addProviderStake(providerA.connection, { deployments, amount: parseEther("50"), onTransaction }),
    ),
  );
  rows.push(
    gasRow(
      "ProviderRegistry.requestUnbond",
      await requestProviderUnbond(providerA.connection, {
        deployments,
        amount: parseEther("50"),
        onTransaction,
      }),
    ),
  );
  await chain.jumpTo((await chain.now()) + BigInt(devnetDeployParameters.providerUnbondingSeconds));
  rows.push(
    gasRow(
      "ProviderRegistry.withdraw (stays registered)",
      await withdrawProviderStake(providerA.connection, { deployments, onTransaction }),
    ),
  );

  await approve(client.connection, deployments, contracts.paymentChannels, parseEther("15"));
  const opened = await openChannel(client.connection, {
    deployments,
    provider: providerA.address,
    amount: parseEther("10"),
    onTransaction,
  });
  rows.push(gasRow("PaymentChannels.open (client's first channel)", opened));
  rows.push(
    gasRow(
      "PaymentChannels.topUp",
      await topUpChannel(client.connection, {
        deployments,
        channelId: opened.channelId,
        amount: parseEther("5"),
        onTransaction,
      }),
    ),
  );
  const domain = deploymentVoucherDomain(deployments);
  const firstVoucher = { channelId: opened.channelId, cumulativeAmount: parseEther("0.25") };
  rows.push(
    gasRow(
      "PaymentChannels.settle (first; provider holds MYC)",
      await settleVoucher(providerA.connection, {
        deployments,
        ...firstVoucher,
        signature: await signVoucher({ privateKey: client.privateKey, domain, message: firstVoucher }),
        onTransaction,
      }),
    ),
  );
  const secondVoucher = { channelId: opened.channelId, cumulativeAmount: parseEther("0.5") };
  rows.push(
    gasRow(
      "PaymentChannels.settle (again)",
      await settleVoucher(providerA.connection, {
        deployments,
        ...secondVoucher,
        signature: await signVoucher({ privateKey: client.privateKey, domain, message: secondVoucher }),
        onTransaction,
      }),
    ),
  );
  rows.push(
    gasRow(
      "PaymentChannels.requestClose",
      await requestChannelClose(client.connection, {
        deployments,
        channelId: opened.channelId,
        onTransaction,
      }),
    ),
  );
  await chain.jumpTo((await chain.now()) + BigInt(devnetDeployParameters.minChallengeSeconds));
  rows.push(
    gasRow(
      "PaymentChannels.withdraw (refund to client)",
      await withdrawChannel(client.connection, { deployments, channelId: opened.channelId, onTransaction }),
    ),
  );

  const validatorStake = parseEther("1000");
  const registered = [];
  for (const validator of validators)
    registered.push(
      await registerValidator(validator.connection, { deployments, stake: validatorStake, onTransaction }),
    );
  rows.push(gasRow("EpochConsensus.registerValidator (first validator)", registered[0] as TransactionReport));
  rows.push(gasRow("EpochConsensus.registerValidator (a later one)", registered[1] as TransactionReport));
  await fundRewards(chain.deployer, { deployments, amount: parseEther("5000"), onTransaction });
  chain.resyncDeployer();

  const epoch = await startNextEpoch(chain, deployments);
  const providerCount = 2;
  const scoresOf = (index: number) => [9000 - index * 100, 7000 + index * 150];
  const salts = validators.map((validator) => keyOf(`ops:salt:${validator.label}`));
  const commits: SendContractTransactionReturnType[] = [];
  for (const [index, validator] of validators.entries())
    commits.push(
      await commitScores(validator.connection, {
        deployments,
        epoch,
        scores: scoresOf(index),
        salt: salts[index] as Hex,
        onTransaction,
      }),
    );
  rows.push(
    gasRow(
      `EpochConsensus.commit (epoch's first: snapshots ${providerCount} providers)`,
      commits[0] as TransactionReport,
    ),
  );
  rows.push(gasRow("EpochConsensus.commit (a later one)", commits[1] as TransactionReport));
  const read = readConsensus(chain, deployments);
  await chain.jumpTo(await read.epochEnd(epoch));
  const reveals = [];
  for (const [index, validator] of validators.entries())
    reveals.push(
      await revealScores(validator.connection, {
        deployments,
        epoch,
        scores: scoresOf(index),
        salt: salts[index] as Hex,
        onTransaction,
      }),
    );
  rows.push(gasRow(`EpochConsensus.reveal (${providerCount} scores)`, reveals[1] as TransactionReport));
  await chain.jumpTo((await read.epochEnd(epoch)) + BigInt(devnetDeployParameters.revealSeconds));
  rows.push(
    gasRow(
      `EpochConsensus.finalize (${validators.length} validators x ${providerCount} providers)`,
      await finalizeEpoch(stranger.connection, { deployments, epoch, onTransaction }),
    ),
  );
  rows.push(
    gasRow(
      "EpochConsensus.claimRewards (validator)",
      await sendContractTransaction(v1.connection, {
        address: contracts.epochConsensus,
        abi: epochConsensusAbi,
        functionName: "claimRewards",
        args: [],
        action: "claim rewards",
        onTransaction,
      }),
    ),
  );

  // Four validators of equal stake: the proposer's vote is 1/4, the second 2/4, the third reaches 2/3 and slashes.
  const evidence = toHex(new Uint8Array(512).map((_, index) => (index * 37 + 11) % 256));
  const proposal = await proposeSlash(v1.connection, {
    deployments,
    provider: providerB.address,
    amount: parseEther("10"),
    evidence,
    onTransaction,
  });
  rows.push(gasRow("EpochConsensus.proposeSlash (512 B evidence; 1/4 of stake)", proposal));
  rows.push(
    gasRow(
      "EpochConsensus.voteSlash (2/4 of stake: not executing)",
      await voteSlash(v2.connection, { deployments, proposalId: proposal.proposalId, onTransaction }),
    ),
  );
  const executing = await voteSlash(v3.connection, {
    deployments,
    proposalId: proposal.proposalId,
    onTransaction,
  });
  const executed = parseEventLogs({
    abi: epochConsensusAbi,
    logs: executing.receipt.logs,
    eventName: "SlashExecuted",
  });
  if (executed.length !== 1) throw new Error("the third vote (3/4 of the stake) did not execute the slash");
  rows.push(gasRow("EpochConsensus.voteSlash (3/4 of stake: executes the slash)", executing));
  return rows;
}

/** Section 2: 1,000 priced requests through one channel (one settle) vs 1,000 ERC-20 transfers. */
async function measureChannel(chain: Chain, deployments: Deployments) {
  const [client, channelProvider, transferProvider] = await Promise.all(
    ["client", "channel-provider", "transfer-provider"].map((label) => actor(chain, `channel:${label}`)),
  );
  if (!client || !channelProvider || !transferProvider) throw new Error("unreachable");
  await fund(chain, deployments, [client.address], parseEther("10000"));
  // The providers hold no MYC before they are paid: the first payment to each creates its balance.
  for (const entry of [channelProvider, transferProvider])
    await chain.testClient.setBalance({ address: entry.address, value: parseEther("1000") });

  // Each request: 20-2,019 prompt tokens at 0.5 MYC/M and 1-1,000 completion tokens at 1.5 MYC/M.
  const next = random(2026);
  const prices = Array.from(
    { length: requests },
    () =>
      (BigInt(between(next, 20, 2019)) * parseEther("0.5") +
        BigInt(between(next, 1, 1000)) * parseEther("1.5")) /
      1_000_000n,
  );
  const total = prices.reduce((sum, price) => sum + price, 0n);
  const deposit = (total / parseEther("1") + 1n) * parseEther("1");

  await approve(client.connection, deployments, deployments.contracts.paymentChannels, deposit);
  const opened = await openChannel(client.connection, {
    deployments,
    provider: channelProvider.address,
    amount: deposit,
    onTransaction,
  });
  const domain = deploymentVoucherDomain(deployments);
  const signingStarted = performance.now();
  let cumulativeAmount = 0n;
  let lastSignature: Hex | undefined;
  for (const [index, price] of prices.entries()) {
    cumulativeAmount += price;
    lastSignature = await signVoucher({
      privateKey: client.privateKey,
      domain,
      message: { channelId: opened.channelId, cumulativeAmount },
    });
    if ((index + 1) % 250 === 0) progress(`vouchers signed: ${index + 1}/${requests}`);
  }
  const signingMs = performance.now() - signingStarted;
  const settled = await settleVoucher(channelProvider.connection, {
    deployments,
    channelId: opened.channelId,
    cumulativeAmount,
    signature: lastSignature as Hex,
    onTransaction,
  });
  if (settled.paid !== total) throw new Error(`the settle paid ${settled.paid}, the requests cost ${total}`);
  const closing = await requestChannelClose(client.connection, {
    deployments,
    channelId: opened.channelId,
    onTransaction,
  });
  await chain.jumpTo((await chain.now()) + BigInt(devnetDeployParameters.minChallengeSeconds));
  const withdrawn = await withdrawChannel(client.connection, {
    deployments,
    channelId: opened.channelId,
    onTransaction,
  });
  if (withdrawn.refunded !== deposit - total) throw new Error(`the client got back ${withdrawn.refunded}`);

  progress(`sending ${requests} ERC-20 transfers, one per request`);
  const clientAccount = privateKeyToAccount(client.privateKey);
  const transfersStarted = performance.now();
  const pending = [];
  for (const price of prices)
    pending.push(
      await chain.send(clientAccount, {
        to: deployments.contracts.token,
        data: encodeFunctionData({
          abi: mycelTokenAbi,
          functionName: "transfer",
          args: [transferProvider.address, price],
        }),
        gas: 100_000n,
        action: "transfer per request",
      }),
    );
  const transferGas = [];
  for (const entry of pending) transferGas.push((await chain.mined(entry)).gasUsed);
  const transfersMs = performance.now() - transfersStarted;
  const received = await chain.publicClient.readContract({
    address: deployments.contracts.token,
    abi: mycelTokenAbi,
    functionName: "balanceOf",
    args: [transferProvider.address],
  });
  if (received !== total) throw new Error(`the transfers delivered ${received}, the requests cost ${total}`);

  const transferTotal = transferGas.reduce((sum, gas) => sum + gas, 0n);
  const lifecycle = opened.gasUsed + settled.gasUsed + closing.gasUsed + withdrawn.gasUsed;
  const perRequest = (gas: bigint) => Number(gas) / requests;
  return {
    total,
    deposit,
    signingMs,
    transfersMs,
    open: opened.gasUsed,
    settle: settled.gasUsed,
    requestClose: closing.gasUsed,
    withdraw: withdrawn.gasUsed,
    settlePerRequest: perRequest(settled.gasUsed),
    lifecyclePerRequest: perRequest(lifecycle),
    lifecycle,
    transferTotal,
    transferFirst: transferGas[0] ?? 0n,
    transferMedian: median(transferGas.map(Number)),
    transferMean: perRequest(transferTotal),
  };
}

/** Deterministic scores: a quality per provider, each validator's noise around it, and a few outliers. */
function scoresFor(validators: number, providers: number, epoch: number) {
  const quality = Array.from({ length: providers }, (_, provider) =>
    between(random(provider + 1), 2500, 9500),
  );
  return Array.from({ length: validators }, (_, validator) => {
    const next = random(1_000_003 * (epoch + 1) + validator);
    return quality.map((base, provider) => {
      // One validator in 16 is an outlier: it gives everyone 0 or everyone the maximum.
      if (validator % 16 === 15) return validator % 32 === 15 ? 0 : 10_000;
      // A few single outlying scores: 1 in 50 is far off.
      if (next() < 0.02) return next() < 0.5 ? 0 : 10_000;
      return Math.max(0, Math.min(10_000, base + between(next, -600, 600) + ((provider * 7) % 3) * 10));
    });
  });
}

type EpochFigures = {
  label: string;
  providerRegister: number;
  validatorRegister: number;
  firstCommit: bigint;
  laterCommit: number;
  revealMedian: number;
  revealMax: bigint;
  finalize: bigint;
};

/**
 * Registers `validators` validators and `providers` providers (the accounts "validator-<i>" and
 * "provider-<i>", funded already) on a deployment, then runs `epochs` epochs in which every validator commits and reveals a score per provider,
 * each finalized.
 */
async function measureEpochs(
  chain: Chain,
  deployments: Deployments,
  parameters: { name: string; validators: number; providers: number; epochs: number; modelHash: Hex },
) {
  const { contracts } = deployments;
  const minimumStake = BigInt(deployments.parameters.minimumProviderStake);
  const minimumValidatorStake = BigInt(deployments.parameters.minimumValidatorStake);
  const providerAccounts = Array.from({ length: parameters.providers }, (_, index) =>
    privateKeyToAccount(keyOf(`provider-${index}`)),
  );
  const validatorAccounts = Array.from({ length: parameters.validators }, (_, index) =>
    privateKeyToAccount(keyOf(`validator-${index}`)),
  );
  const validatorStakeOf = (index: number) => minimumValidatorStake + BigInt(index % 8) * parseEther("100");

  const providerGas = await chain.inBatches(
    `${parameters.name}: providers register`,
    providerAccounts,
    async (account) => {
      const approving = await chain.send(account, {
        to: contracts.token,
        data: encodeFunctionData({
          abi: mycelTokenAbi,
          functionName: "approve",
          args: [contracts.providerRegistry, minimumStake],
        }),
        gas: 100_000n,
        action: "approve the provider registry",
      });
      const registering = await chain.send(account, {
        to: contracts.providerRegistry,
        data: encodeFunctionData({
          abi: providerRegistryAbi,
          functionName: "register",
          args: [peerIdOf(account.address), [offerOf(parameters.modelHash)], minimumStake],
        }),
        gas: 600_000n,
        action: "register a provider",
      });
      await chain.mined(approving);
      return (await chain.mined(registering)).gasUsed;
    },
  );
  const validatorGas = await chain.inBatches(
    `${parameters.name}: validators register`,
    validatorAccounts,
    async (account, index) => {
      const approving = await chain.send(account, {
        to: contracts.token,
        data: encodeFunctionData({
          abi: mycelTokenAbi,
          functionName: "approve",
          args: [contracts.epochConsensus, validatorStakeOf(index)],
        }),
        gas: 100_000n,
        action: "approve the consensus",
      });
      const registering = await chain.send(account, {
        to: contracts.epochConsensus,
        data: encodeFunctionData({
          abi: epochConsensusAbi,
          functionName: "registerValidator",
          args: [validatorStakeOf(index)],
        }),
        gas: 300_000n,
        action: "register a validator",
      });
      await chain.mined(approving);
      return (await chain.mined(registering)).gasUsed;
    },
  );
  await fundRewards(chain.deployer, { deployments, amount: parseEther("100000"), onTransaction });
  chain.resyncDeployer();

  const read = readConsensus(chain, deployments);
  const figures: EpochFigures[] = [];
  for (let round = 0; round < parameters.epochs; round++) {
    const epoch = await startNextEpoch(chain, deployments);
    const label = `${parameters.name}, epoch ${round + 1}`;
    const scores = scoresFor(parameters.validators, parameters.providers, round);
    const active = await chain.publicClient.readContract({
      address: contracts.providerRegistry,
      abi: providerRegistryAbi,
      functionName: "activeProviders",
    });
    const salts = validatorAccounts.map((account) => keyOf(`salt:${account.address}:${epoch}`));
    const commitCall = (index: number) => {
      const account = validatorAccounts[index] as PrivateKeyAccount;
      const commitment = scoreCommitment({
        epoch,
        validator: account.address,
        scores: scores[index] as number[],
        salt: salts[index] as Hex,
      });
      return chain.send(account, {
        to: contracts.epochConsensus,
        data: encodeFunctionData({
          abi: epochConsensusAbi,
          functionName: "commit",
          args: [epoch, commitment],
        }),
        gas: index === 0 ? 30_000_000n : 500_000n,
        action: index === 0 ? "first commit of an epoch" : "commit",
      });
    };
    const first = await chain.mined(await commitCall(0));
    // One after another: the order of the commits is the order finalize sorts the scores in, so the figures
    // stay the same from run to run.
    const later: bigint[] = [];
    for (let index = 1; index < parameters.validators; index++)
      later.push((await chain.mined(await commitCall(index))).gasUsed);
    progress(`${label}: ${parameters.validators} commits`);
    const state = await chain.publicClient.readContract({
      address: contracts.epochConsensus,
      abi: epochConsensusAbi,
      functionName: "getEpoch",
      args: [epoch],
    });
    if (state.providers.length !== parameters.providers || state.committers.length !== parameters.validators)
      throw new Error(
        `${label}: ${state.providers.length} providers and ${state.committers.length} committers in the epoch`,
      );
    // Scores go by position in the epoch's provider list: the registry's active providers at the first commit.
    if (state.providers.join() !== active.join()) throw new Error(`${label}: the epoch's providers differ`);

    const end = await read.epochEnd(epoch);
    await chain.jumpTo(end);
    const reveals = await chain.inBatches(
      `${label}: reveals`,
      validatorAccounts,
      async (account, index) =>
        (
          await chain.mined(
            await chain.send(account, {
              to: contracts.epochConsensus,
              data: encodeFunctionData({
                abi: epochConsensusAbi,
                functionName: "reveal",
                args: [epoch, scores[index] as number[], salts[index] as Hex],
              }),
              gas: 3_000_000n,
              action: `reveal ${parameters.providers} scores`,
            }),
          )
        ).gasUsed,
    );
    if ((await chain.now()) >= end + BigInt(deployments.parameters.revealSeconds))
      throw new Error(`${label}: the reveals ran past the reveal period`);
    await chain.jumpTo(end + BigInt(deployments.parameters.revealSeconds));
    progress(`${label}: finalize`);
    const finalizeStarted = performance.now();
    const finalized = await finalizeEpoch(chain.deployer, { deployments, epoch, onTransaction });
    progress(
      `${label}: finalized in ${((performance.now() - finalizeStarted) / 1000).toFixed(1)} s ` +
        "(simulate, estimate, send)",
    );
    chain.resyncDeployer();
    const [event] = parseEventLogs({
      abi: epochConsensusAbi,
      logs: finalized.receipt.logs,
      eventName: "EpochFinalized",
    });
    if (
      !event ||
      event.args.validators !== BigInt(parameters.validators) ||
      event.args.providers !== BigInt(parameters.providers)
    )
      throw new Error(`${label}: finalize did not count ${parameters.validators} x ${parameters.providers}`);
    if (event.args.distributed === 0n) throw new Error(`${label}: finalize credited no rewards`);
    figures.push({
      label,
      providerRegister: median(providerGas.map(Number)),
      validatorRegister: median(validatorGas.map(Number)),
      firstCommit: first.gasUsed,
      laterCommit: median(later.map(Number)),
      revealMedian: median(reveals.map(Number)),
      revealMax: largest(reveals),
      finalize: finalized.gasUsed,
    });
  }
  return figures;
}

/** The largest of some gas figures (0 for none). */
function largest(values: readonly bigint[]) {
  let max = 0n;
  for (const value of values) if (value > max) max = value;
  return max;
}

const gasText = (gas: bigint | number) =>
  (typeof gas === "number" ? Math.round(gas) : gas).toLocaleString("en-US");

async function main() {
  const stop = () => {
    void (anvil?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    anvil = await startAnvil({ gasLimit: anvilGasLimit });
    const chain = await openChain(anvil);
    const version = await chain.publicClient.request({ method: "web3_clientVersion" });
    progress(`${version} at ${anvil.rpcUrl}`);
    const deployReports: TransactionReport[] = [];
    chain.resyncDeployer();
    const deployments = await deployMycel(chain.deployer, {
      parameters: devnetDeployParameters,
      onTransaction: (report) => {
        deployReports.push(report);
        onTransaction(report);
      },
    });
    console.log(
      `${version}, block gas limit ${gasText(anvilGasLimit)} (so nothing is refused for size), a block per ` +
        "transaction; contracts from src/chain/generated (solc-js), devnet parameters\n",
    );

    // 1. Gas per operation.
    progress("section 1: every operation once");
    const rows = await measureOperations(chain, deployments);
    console.log("1. gas per operation (gasUsed from the receipt: 21,000 base + calldata + execution)");
    console.log(
      formatTable(
        ["operation", "gas"],
        [...deployReports.map((report): Row => [report.action, report.gasUsed]), ...rows].map(
          ([label, gas]) => [label, gasText(gas)],
        ),
      ),
    );
    console.log(
      "(one deployment; 4 validators of 1,000 MYC; provider stake 100 MYC; the reward pool funded so finalize " +
        "and claimRewards move tokens)\n",
    );

    // 2. 1,000 requests: one channel vs one transfer each.
    progress(`section 2: ${requestsText} requests through one channel vs ${requestsText} transfers`);
    const channel = await measureChannel(chain, deployments);
    console.log(
      `2. ${requestsText} priced requests paid through one payment channel vs one ERC-20 transfer each`,
    );
    const perRequestText = (gas: number) => roundUp(gas, 1).toFixed(1);
    console.log(
      formatTable(
        ["payment", "gas", "gas per request"],
        [
          ["channel: open (approved beforehand)", channel.open],
          ["channel: settle the last voucher once", channel.settle],
          ["channel: requestClose", channel.requestClose],
          ["channel: withdraw (the refund)", channel.withdraw],
          ["channel: open + settle + requestClose + withdraw", channel.lifecycle],
          [`${requestsText} ERC-20 transfers, one per request`, channel.transferTotal],
          ["  the first transfer (creates the payee's balance)", channel.transferFirst, "single"],
          ["  median transfer", BigInt(channel.transferMedian), "single"],
        ].map(([label, gas, single]) => [
          label as string,
          gasText(gas as bigint),
          single ? "-" : perRequestText(Number(gas) / requests),
        ]),
      ),
    );
    console.log(
      `(requests priced 20-2,019 prompt tokens x 0.5 MYC/M + 1-1,000 completion tokens x 1.5 MYC/M: ` +
        `${(Number(channel.total) / 1e18).toFixed(4)} MYC in all, deposit ${Number(channel.deposit) / 1e18} MYC; ` +
        `${requestsText} cumulative vouchers signed in ${(channel.signingMs / 1000).toFixed(1)} s, ` +
        `${requestsText} transfers mined in ${(channel.transfersMs / 1000).toFixed(1)} s; both payees held no MYC before)`,
    );
    console.log(
      `ratios: transfers / settle ${(channel.transferMean / channel.settlePerRequest).toFixed(0)}x, ` +
        `transfers / whole channel lifecycle ${(channel.transferMean / channel.lifecyclePerRequest).toFixed(0)}x\n`,
    );

    // 3. EpochConsensus at its bounds.
    progress(`section 3: ${bound.validators} validators x ${bound.providers} providers`);
    const big = await deploy(chain);
    const modelHash = keccak256(toHex("bench:epoch-model"));
    await registerModel(chain.deployer, { deployments: big, modelHash, ...benchModel, onTransaction });
    const providerAddresses = Array.from(
      { length: bound.providers },
      (_, index) => privateKeyToAccount(keyOf(`provider-${index}`)).address,
    );
    const validatorAddresses = Array.from(
      { length: bound.validators },
      (_, index) => privateKeyToAccount(keyOf(`validator-${index}`)).address,
    );
    await fund(chain, big, [chain.deployerAccount.address], parseEther("1000000"));
    await fund(chain, big, [...providerAddresses, ...validatorAddresses], parseEther("10000"));
    const atBound = await measureEpochs(chain, big, {
      name: `${bound.validators}x${bound.providers}`,
      ...bound,
      epochs: 2,
      modelHash,
    });
    // The smaller epoch on its own deployment (same token: the accounts hold MYC already), fresh storage as in epoch 1.
    progress(`section 3: ${small.validators} validators x ${small.providers} providers`);
    const smaller = await deploy(chain, big.contracts.token);
    await registerModel(chain.deployer, { deployments: smaller, modelHash, ...benchModel, onTransaction });
    const [atSmall] = await measureEpochs(chain, smaller, {
      name: `${small.validators}x${small.providers}`,
      ...small,
      epochs: 1,
      modelHash,
    });
    const [firstEpoch, secondEpoch] = atBound as [EpochFigures, EpochFigures];
    const columns = [atSmall as EpochFigures, firstEpoch, secondEpoch];
    console.log(
      `3. EpochConsensus at its bounds: ${bound.validators} validators x ${bound.providers} providers ` +
        `(and ${small.validators} x ${small.providers}), one model offered by every provider`,
    );
    console.log(
      formatTable(
        [
          "gas",
          `${small.validators} x ${small.providers}`,
          `${bound.validators} x ${bound.providers}, epoch 1`,
          `${bound.validators} x ${bound.providers}, epoch 2`,
        ],
        [
          [
            "ProviderRegistry.register (median)",
            ...columns.map((entry, index) => (index === 2 ? "-" : gasText(entry.providerRegister))),
          ],
          [
            "EpochConsensus.registerValidator (median)",
            ...columns.map((entry, index) => (index === 2 ? "-" : gasText(entry.validatorRegister))),
          ],
          ["first commit (snapshots the providers)", ...columns.map((entry) => gasText(entry.firstCommit))],
          ["later commit (median)", ...columns.map((entry) => gasText(entry.laterCommit))],
          ["reveal (median)", ...columns.map((entry) => gasText(entry.revealMedian))],
          ["reveal (max)", ...columns.map((entry) => gasText(entry.revealMax))],
          ["finalize", ...columns.map((entry) => gasText(entry.finalize))],
          [
            "finalize per validator x provider",
            ...columns.map((entry, index) => {
              const cells =
                index === 0 ? small.validators * small.providers : bound.validators * bound.providers;
              return (Number(entry.finalize) / cells).toFixed(0);
            }),
          ],
        ],
      ),
    );
    console.log(
      "(scores: a quality per provider plus +-600 noise per validator, 2% single outliers (0 or 10,000), and one " +
        "validator in 16 giving everyone 0 or 10,000; stakes 1,000-1,700 MYC; the reward pool funded, so finalize " +
        "credits every provider and validator. Epoch 1 writes every standing and reward balance for the first " +
        "time; epoch 2 overwrites them.)",
    );
    const worstFinalize = largest([firstEpoch.finalize, secondEpoch.finalize]);
    const overCap = [
      ["finalize at 64 x 256", worstFinalize],
      ["first commit at 64 x 256", firstEpoch.firstCommit],
    ].filter(([, gas]) => (gas as bigint) > osakaTransactionCap);
    if (overCap.length > 0)
      console.log(
        `note: ${overCap.map(([what, gas]) => `${what} (${gasText(gas as bigint)})`).join(", ")} ` +
          `${overCap.length === 1 ? "exceeds" : "exceed"} the ` +
          `EIP-7825 per-transaction cap of ${gasText(osakaTransactionCap)} gas (Osaka) that chains adopting it enforce`,
      );
    console.log(
      `\ntransactions in the run: ${tally.transactions.toLocaleString("en-US")}, ${gasText(tally.gas)} gas; ` +
        `the largest: ${tally.largest.action} (${gasText(tally.largest.gas)} gas)\n`,
    );

    console.log(
      `channel settlement gas per request (${requestsText} requests, one settle): ` +
        `${perRequestText(channel.settlePerRequest)} (target <= ${targets.settleGasPerRequest}) ` +
        verdict(channel.settlePerRequest <= targets.settleGasPerRequest),
    );
    console.log(
      `whole channel lifecycle gas per request (open + settle + requestClose + withdraw): ` +
        `${perRequestText(channel.lifecyclePerRequest)} (no target: information)`,
    );
    console.log(
      `ERC-20 transfer gas per request (one transfer each): ${perRequestText(channel.transferMean)}, ` +
        `${(channel.transferMean / channel.settlePerRequest).toFixed(0)}x the channel's settle (no target: information)`,
    );
    console.log(
      `finalize gas at ${bound.validators} validators x ${bound.providers} providers: ${worstFinalize} ` +
        `(target <= ${targets.transactionGas}) ${verdict(worstFinalize <= targets.transactionGas)}`,
    );
    console.log(
      `largest single transaction gas: ${tally.largest.gas} (${tally.largest.action}) ` +
        `(target <= ${targets.transactionGas}) ${verdict(tally.largest.gas <= targets.transactionGas)}`,
    );
  } finally {
    await anvil?.stop();
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
