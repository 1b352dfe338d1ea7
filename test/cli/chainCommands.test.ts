import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseEther } from "viem";
import {
  deploymentVoucherDomain,
  getChannel,
  getProviderRecord,
  openChannel,
  readChainBinding,
  settleVoucher,
  writeDeployments,
} from "../../src/chain/index.ts";
import { createKeystore } from "../../src/identity/index.ts";
import { signVoucher } from "../../src/protocol/index.ts";
import {
  gatewayPaymentStorePath,
  openPaymentStore,
  providerPaymentStorePath,
} from "../../src/store/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import { runMycel, temporaryHome } from "../helpers.ts";

const password = "chain-cli-test";

describe("chain commands of the CLI (real anvil)", () => {
  let chain: LocalChain;
  let directory: { home: string; remove: () => Promise<void> };
  let provider: TestAccount;
  let client: TestAccount;
  const mycel = (args: string[]) =>
    runMycel(args, { home: directory.home, env: { MYCEL_PASSWORD: password } });

  before(async () => {
    chain = await startLocalChain();
    directory = await temporaryHome("mycel-chain-cli-");
    provider = await chain.account("cli-provider");
    client = await chain.account("cli-client");
    await createKeystore({
      home: directory.home,
      name: "provider",
      password,
      privateKey: provider.privateKey,
    });
    await createKeystore({ home: directory.home, name: "client", password, privateKey: client.privateKey });
    writeDeployments(`${directory.home}/deployments.json`, {
      ...chain.deployments,
      rpcUrl: chain.anvil.rpcUrl,
    });
  });
  after(async () => {
    await chain?.stop();
    await directory?.remove();
  });

  it("registers test models with lineage and shows the tree", async () => {
    const made1 = await mycel(["model", "make-test", "--seed", "11"]);
    const made2 = await mycel(["model", "make-test", "--seed", "12"]);
    const hash1 = /sha256: ([0-9a-f]{64})/.exec(made1.stdout)?.[1];
    const hash2 = /sha256: ([0-9a-f]{64})/.exec(made2.stdout)?.[1];
    assert.ok(hash1 && hash2, made1.stdout + made2.stdout);
    const base = await mycel(["model", "register", hash1, "--key", "provider", "--license", "Apache-2.0"]);
    assert.equal(base.code, 0, base.stderr);
    assert.match(base.stdout, /✓ register model .*\n\s+tx 0x[0-9a-f]{64}\s+block \d+\s+gas \d+/);
    const child = await mycel([
      "model",
      "register",
      hash2,
      "--key",
      "provider",
      "--parent",
      `${hash1}:finetune`,
    ]);
    assert.equal(child.code, 0, child.stderr);
    assert.match(child.stdout, /NOASSERTION|registered/);
    const info = await mycel(["model", "info", hash2]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, new RegExp(`└─ finetune of mycel-test-tiny-s11-f32 0x${hash1}`));
    const baseInfo = await mycel(["model", "info", hash1]);
    assert.match(
      baseInfo.stdout,
      new RegExp(`derived models:\\n\\s+finetune: mycel-test-tiny-s12-f32 0x${hash2}`),
    );
    assert.match(baseInfo.stdout, /license:\s+Apache-2\.0/);

    const again = await mycel(["model", "register", hash1, "--key", "provider"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /was refused: model 0x[0-9a-f]{64} is registered already/);
    const badParent = await mycel([
      "model",
      "register",
      hash2,
      "--key",
      "provider",
      "--parent",
      `${hash1}:copy`,
    ]);
    assert.equal(badParent.code, 1);
    assert.match(badParent.stderr, /is not <sha256 hash>:<relation>/);
    assert.match(badParent.stderr, /finetune, quantize, distill, merge, adapter, convert/);
  });

  it("stakes, unbonds and withdraws as a provider, with refusals in words", async () => {
    const models = await mycel(["model", "list", "--json"]);
    const hash = (JSON.parse(models.stdout) as { hash: string }[])[0]?.hash as string;
    const noModel = await mycel(["provider", "stake", "100", "--key", "provider"]);
    assert.equal(noModel.code, 1);
    assert.match(noModel.stderr, /a new provider names the models it serves/);
    const low = await mycel(["provider", "stake", "5", "--model", hash, "--key", "provider"]);
    assert.equal(low.code, 1);
    assert.match(low.stderr, /a stake of 5000000000000000000 is below the minimum of 100000000000000000000/);
    assert.equal(
      await getProviderRecord(provider.connection, {
        deployments: chain.deployments,
        provider: provider.address,
      }),
      undefined,
    );

    const staked = await mycel([
      "provider",
      "--model",
      hash,
      "--price",
      "7",
      "stake",
      "100",
      "--key",
      "provider",
    ]);
    assert.equal(staked.code, 0, staked.stderr);
    assert.match(staked.stdout, /staked 100 MYC \(active\)/);
    const more = await mycel(["provider", "stake", "50.5", "--key", "provider"]);
    assert.equal(more.code, 0, more.stderr);
    const record = await getProviderRecord(provider.connection, {
      deployments: chain.deployments,
      provider: provider.address,
    });
    assert.equal(record?.stake, parseEther("150.5"));
    assert.equal(record?.offers[0]?.inputPricePerMillion, 7n);

    const early = await mycel(["provider", "withdraw", "--key", "provider"]);
    assert.equal(early.code, 1);
    assert.match(early.stderr, /was refused: nothing is unbonding/);
    const unbond = await mycel(["provider", "unbond", "50.5", "--key", "provider"]);
    assert.equal(unbond.code, 0, unbond.stderr);
    assert.match(unbond.stdout, /unbonding 50\.5 MYC: withdraw with `mycel provider withdraw` after /);
    const tooEarly = await mycel(["provider", "withdraw", "--key", "provider"]);
    assert.equal(tooEarly.code, 1);
    assert.match(tooEarly.stderr, /the unbonding period ends at \d{4}-/);
    await chain.increaseTime(chain.deployments.parameters.providerUnbondingSeconds + 1);
    const withdrawn = await mycel(["provider", "withdraw", "--key", "provider"]);
    assert.equal(withdrawn.code, 0, withdrawn.stderr);
    assert.match(withdrawn.stdout, /withdrew 50\.5 MYC/);
    const status = await mycel(["provider", "status", "--key", "provider"]);
    assert.match(status.stdout, /active\n\s+stake:\s+100 MYC/);
  });

  it("opens, lists and closes a payment channel in two steps", async () => {
    const opened = await mycel([
      "channel",
      "open",
      "--provider",
      provider.address,
      "--amount",
      "3",
      "--key",
      "client",
    ]);
    assert.equal(opened.code, 0, opened.stderr);
    const channelId = /channel (0x[0-9a-f]{64}) open: 3 MYC/.exec(opened.stdout)?.[1] as `0x${string}`;
    assert.ok(channelId, opened.stdout);
    const listed = await mycel(["channel", "list", "--key", "client"]);
    assert.match(
      listed.stdout,
      new RegExp(`${channelId}\\s+client\\s+${provider.address}\\s+3 MYC\\s+-\\s+0 MYC\\s+open`),
    );
    const providerView = await mycel(["channel", "list", "--key", "provider", "--json"]);
    assert.equal((JSON.parse(providerView.stdout) as { role: string }[])[0]?.role, "provider");

    const requested = await mycel(["channel", "close", channelId, "--key", "client"]);
    assert.equal(requested.code, 0, requested.stderr);
    assert.match(requested.stdout, /is closing: the provider may settle until/);
    const early = await mycel(["channel", "close", channelId, "--key", "client"]);
    assert.equal(early.code, 1);
    assert.match(early.stderr, /the challenge period of channel 0x[0-9a-f]{64} ends at/);
    assert.equal(
      (await getChannel(client.connection, { deployments: chain.deployments, channelId })).state,
      "closing",
    );
    await chain.increaseTime(chain.deployments.parameters.minChallengeSeconds + 1);
    const closed = await mycel(["channel", "close", channelId, "--key", "client"]);
    assert.equal(closed.code, 0, closed.stderr);
    assert.match(closed.stdout, /closed: 3 MYC returned, 0 MYC paid to the provider/);
    assert.equal(
      (await getChannel(client.connection, { deployments: chain.deployments, channelId })).state,
      "closed",
    );
  });

  it("shows wallets and vouchers from the chain and this machine's payment stores, without a password", async () => {
    const deposit = parseEther("4");
    const { channelId } = await openChannel(client.connection, {
      deployments: chain.deployments,
      provider: provider.address,
      amount: deposit,
    });
    // What the gateway and the provider roles write as they pay and get paid.
    const paid = parseEther("1.5");
    const signature = await signVoucher({
      privateKey: client.privateKey,
      domain: deploymentVoucherDomain(chain.deployments),
      message: { channelId, cumulativeAmount: paid },
    });
    const { key: boundTo } = await readChainBinding(chain.deployer, { deployments: chain.deployments });
    const gatewayStore = openPaymentStore({ path: gatewayPaymentStorePath(directory.home), chain: boundTo });
    gatewayStore.addChannel({
      channelId,
      client: client.address,
      provider: provider.address,
      deposit,
      state: "open",
    });
    gatewayStore.recordSigned({ channelId, amount: paid });
    gatewayStore.close();
    const providerStore = openPaymentStore({
      path: providerPaymentStorePath(directory.home, provider.address),
      chain: boundTo,
    });
    providerStore.saveVoucher({
      channelId,
      provider: provider.address,
      client: client.address,
      cumulativeAmount: paid,
      signature,
    });
    providerStore.close();
    await settleVoucher(provider.connection, {
      deployments: chain.deployments,
      channelId,
      cumulativeAmount: parseEther("1"),
      signature: await signVoucher({
        privateKey: client.privateKey,
        domain: deploymentVoucherDomain(chain.deployments),
        message: { channelId, cumulativeAmount: parseEther("1") },
      }),
    });
    const noPassword = (args: string[]) => runMycel(args, { home: directory.home });

    const clientWallet = await noPassword(["wallet", "--key", "client", "--json"]);
    assert.equal(clientWallet.code, 0, clientWallet.stderr);
    const asClient = JSON.parse(clientWallet.stdout).asClient as Record<string, string | number>;
    assert.equal(asClient.paid, paid.toString(), "vouchers signed by this machine's gateway");
    assert.ok(BigInt(asClient.deposited as string) >= deposit, "the open channel's deposit counts");

    const providerWallet = await noPassword(["wallet", "--key", "provider"]);
    assert.equal(providerWallet.code, 0, providerWallet.stderr);
    assert.match(
      providerWallet.stdout,
      /as a provider .*vouchers received here 1\.5 MYC \(0\.5 MYC not settled yet\); settled to you 1 MYC/,
      "earnings: received, settled on chain",
    );
    const byAddress = await noPassword(["wallet", "--address", provider.address, "--json"]);
    assert.equal(JSON.parse(byAddress.stdout).address, provider.address, "any address works too");

    const listed = await noPassword(["channel", "list", "--key", "provider"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(`${channelId}\\s+provider\\s+${client.address}\\s+4 MYC\\s+1\\.5 MYC\\s+1 MYC\\s+open`),
      "the channel with the latest voucher received and what is settled",
    );
  });

  it("explains a missing deployment, an unreachable RPC and a reset chain", async () => {
    const other = await temporaryHome("mycel-chain-cli-empty-");
    try {
      const missing = await runMycel(["channel", "list"], { home: other.home });
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no deployments file at .*deployments\.json/);
      assert.match(missing.stderr, /mycel devnet|mycel chain deploy/);
      writeDeployments(`${other.home}/deployments.json`, {
        ...chain.deployments,
        rpcUrl: "http://127.0.0.1:9",
      });
      const down = await runMycel(["model", "info", "00".repeat(32)], { home: other.home });
      assert.equal(down.code, 1);
      assert.match(down.stderr, /connecting to http:\/\/127\.0\.0\.1:9/);
      const elsewhere = {
        ...chain.deployments,
        contracts: { ...chain.deployments.contracts, providerRegistry: provider.address },
      };
      writeDeployments(`${other.home}/deployments.json`, { ...elsewhere, rpcUrl: chain.anvil.rpcUrl });
      const reset = await runMycel(["model", "info", "00".repeat(32)], { home: other.home });
      assert.equal(reset.code, 1);
      assert.match(reset.stderr, /no Mycel contracts at/);
    } finally {
      await other.remove();
    }
  });

  it("deploys to any chain with `mycel chain deploy` and refuses to overwrite", async () => {
    const other = await temporaryHome("mycel-chain-cli-deploy-");
    try {
      const deployer = await chain.account("cli-deployer");
      await createKeystore({ home: other.home, name: "default", password, privateKey: deployer.privateKey });
      const env = { MYCEL_PASSWORD: password };
      const deployed = await runMycel(
        ["chain", "deploy", "--rpc-url", chain.anvil.rpcUrl, "--devnet-periods"],
        {
          home: other.home,
          env,
        },
      );
      assert.equal(deployed.code, 0, deployed.stderr);
      assert.match(deployed.stdout, /✓ deploy EpochConsensus\n\s+tx 0x/);
      const status = await runMycel(["chain", "status", "--key", "default"], { home: other.home, env });
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /chain 31337 at http:\/\/127\.0\.0\.1:\d+, block \d+/);
      assert.match(status.stdout, /token: MYC, 18 decimals/);
      const again = await runMycel(["chain", "deploy", "--rpc-url", chain.anvil.rpcUrl], {
        home: other.home,
        env,
      });
      assert.equal(again.code, 1);
      assert.match(again.stderr, /exists already/);
    } finally {
      await other.remove();
    }
  });
});
