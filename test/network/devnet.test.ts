import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { privateKeyToAccount } from "viem/accounts";
import {
  anvilDeployerKey,
  connectChain,
  fundDevAccounts,
  getModelEntry,
  getProviderRecord,
  listStakedProviders,
  readDeployments,
  readValidatorStake,
} from "../../src/chain/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { mycelBin, runMycel, startMycelServer, startRole, temporaryHome, waitFor } from "../helpers.ts";

type SignedReceiptJson = {
  domain: Record<string, unknown>;
  message: { provider: string; modelHash: string };
};

/** Pids of processes whose command line mentions `text` (other than this test's own). */
function processesMentioning(text: string): number[] {
  const lines = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" }).split("\n");
  return lines
    .filter((line) => line.includes(text) && !line.includes("node --test"))
    .map((line) => Number(line.trim().split(/\s+/)[0]))
    .filter((pid) => pid !== process.pid);
}

type ListedProvider = { peer_id: string; not_routed: string | null; status: string };

/**
 * A second gateway, in a home of its own, given only the devnet's RPC URL and deployments file: it finds every
 * staked provider (peer ids on chain; announcements from a bootstrap peer's snapshot, else addresses from the DHT
 * and the deployments' bootstrap list) and answers.
 */
async function joinWithOnlyTheChain(parameters: {
  rpcUrl: string;
  deploymentsPath: string;
  example: string;
}) {
  const deployments = readDeployments(parameters.deploymentsPath);
  assert.equal(
    deployments.bootstrap?.length,
    3,
    "the devnet wrote its providers and validator as bootstrap nodes",
  );
  const deployer = await connectChain({
    rpcUrl: parameters.rpcUrl,
    privateKey: anvilDeployerKey,
    deployments,
  });
  const staked = await listStakedProviders(deployer, { deployments });
  assert.equal(staked.length, 2);
  const privateKey = devPrivateKey("devnet-test-second-gateway");
  await fundDevAccounts(deployer, { deployments, accounts: [privateKeyToAccount(privateKey).address] });
  const home = await temporaryHome("mycel-second-gateway-");
  const password = "second-gateway";
  await createKeystore({ home: home.home, name: "default", password, privateKey });
  const gateway = await startRole(
    [
      mycelBin,
      "--home",
      home.home,
      "gateway",
      "--port",
      "0",
      "--rpc-url",
      parameters.rpcUrl,
      "--deployments",
      parameters.deploymentsPath,
    ],
    { env: { MYCEL_PASSWORD: password } },
  );
  try {
    const url = gateway.ready.url as string;
    const listed = await waitFor(
      "the second gateway to list every staked provider as routable",
      async () => {
        const response = await fetch(`${url}/mycel/v1/providers`);
        const providers = ((await response.json()) as { data: ListedProvider[] }).data;
        const routable = providers.filter((entry) => entry.not_routed === null && entry.status === "online");
        return routable.length === staked.length ? routable : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100, describe: () => gateway.output().slice(-2000) },
    );
    assert.deepEqual(
      listed.map((entry) => entry.peer_id).sort(),
      staked.map((entry) => entry.peerId).sort(),
      "exactly the peers staked on chain",
    );
    // A bootstrap peer handed it every staked provider's announcement in one snapshot (/mycel/announcements/1.0.0).
    await waitFor(
      "a snapshot carrying every staked provider",
      async () =>
        [
          ...gateway
            .output()
            .matchAll(/announcement snapshot .*?accepted=(\d+) known=(\d+) unstaked=0 refused=0 forged=0/g),
        ].some((match) => Number(match[1]) + Number(match[2]) === staked.length) || undefined,
      { timeoutMs: 5_000, intervalMs: 100, describe: () => gateway.output().slice(-2000) },
    );
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: parameters.example,
    });
    assert.equal(response.status, 200, await response.clone().text());
    const body = (await response.json()) as {
      mycel: { receipts: unknown[] };
      usage: { completion_tokens: number };
    };
    assert.ok(body.usage.completion_tokens > 0);
    assert.equal(body.mycel.receipts.length, 1);
  } finally {
    await gateway.stop();
    await home.remove();
  }
}

describe("devnet (what `npm start` runs)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  before(async () => {
    directory = await temporaryHome("mycel-devnet-");
  });
  after(async () => {
    await directory.remove();
  });

  it("starts providers and a validator in their own processes and a gateway, serves its printed example, and stops with no orphan", async () => {
    // A devnet's start (chain, 2 providers, a validator, a gateway that lists both) takes ~20 s alone and more
    // beside other tests: the same allowance as the other devnet tests.
    const devnet = await startMycelServer(["devnet", "--providers", "2", "--port", "0", "--rpc-port", "0"], {
      home: directory.home,
      timeoutMs: 120_000,
    });
    let stopped = false;
    try {
      const output = devnet.output();
      assert.match(devnet.url, /^http:\/\/127\.0\.0\.1:\d+$/, "binds loopback");
      assert.match(output, /provider-1: 0x[0-9a-fA-F]{40}/);
      assert.match(output, /provider-2: 0x[0-9a-fA-F]{40}/);
      assert.match(output, /\[provider-1\] /, "each role's logs are prefixed");
      assert.match(
        output,
        /new OpenAI\(\{ baseURL: "http:\/\/127\.0\.0\.1:\d+\/v1"/,
        "prints an openai client example",
      );
      assert.match(output, /validator: 0x[0-9a-fA-F]{40} \(peer 16Uiu2/, "prints its validator");
      assert.equal(
        processesMentioning(directory.home).length,
        3,
        "two provider processes and a validator process run",
      );
      const example = /-d '(\{.*\})'/.exec(output)?.[1];
      assert.ok(example, output);
      const response = await fetch(`${devnet.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: example,
      });
      assert.equal(response.status, 200);
      const body = (await response.json()) as {
        mycel: { receipts: unknown[] };
        usage: { completion_tokens: number };
      };
      assert.ok(body.usage.completion_tokens > 0);
      assert.equal(body.mycel.receipts.length, 1);

      // The chain: anvil on loopback, contracts deployed, providers staked, receipts bound to the deployment.
      const rpcUrl = /Chain \(anvil\): (http:\/\/127\.0\.0\.1:\d+), chain id 31337/.exec(output)?.[1];
      assert.ok(rpcUrl, output);
      const deployments = readDeployments(join(directory.home, "deployments.json"));
      assert.equal(deployments.chainId, 31337);
      assert.match(output, new RegExp(`providerRegistry\\s+${deployments.contracts.providerRegistry}`));
      const receipt = body.mycel.receipts[0] as SignedReceiptJson;
      assert.deepEqual(receipt.domain, {
        name: "Mycel",
        version: "1",
        chainId: 31337,
        verifyingContract: deployments.contracts.providerRegistry,
      });
      const connection = await connectChain({ rpcUrl, deployments });
      const record = await getProviderRecord(connection, {
        deployments,
        provider: receipt.message.provider as `0x${string}`,
      });
      assert.equal(record?.active, true, "the provider that answered is staked on chain");
      const model = await getModelEntry(connection, {
        deployments,
        modelHash: receipt.message.modelHash as `0x${string}`,
      });
      assert.equal(model?.name, JSON.parse(example).model, "the served model is registered");
      await joinWithOnlyTheChain({
        rpcUrl,
        deploymentsPath: join(directory.home, "deployments.json"),
        example,
      });
      const validatorStake = await readValidatorStake(connection, {
        deployments,
        validator: privateKeyToAccount(devPrivateKey("devnet-validator")).address,
      });
      assert.ok(validatorStake > 0n, "the devnet's validator is staked on chain");
      const status = await runMycel(["provider", "status", "--key", "devnet-provider-1"], {
        home: directory.home,
        env: { MYCEL_PASSWORD: "mycel-devnet" },
      });
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /active\n\s+stake:\s+100 MYC/);
      // A devnet user reaches its accounts without naming a key: the devnet's gateway key, said so.
      const gatewayAddress = privateKeyToAccount(devPrivateKey("devnet-gateway")).address;
      const wallet = await runMycel(["wallet"], { home: directory.home });
      assert.equal(wallet.code, 0, wallet.stderr);
      assert.ok(wallet.stdout.startsWith(`${gatewayAddress} on chain 31337`), wallet.stdout);
      // One channel to the provider that answered, and maybe one to the standby it would have failed over to.
      assert.match(
        wallet.stdout,
        /as a client\s+(1 open channel\(s\), 10|2 open channel\(s\), 20) MYC deposited/,
      );
      assert.match(
        wallet.stderr,
        /no key named "default": showing the devnet's gateway key "devnet-gateway"/,
      );
      const channels = await runMycel(["channel", "list", "--json"], { home: directory.home });
      assert.equal(channels.code, 0, channels.stderr);
      const rows = JSON.parse(channels.stdout) as { role: string; counterparty: string }[];
      // The channel that paid for the answer, and maybe the standby's (the provider it would have failed over to).
      assert.ok(rows.length >= 1 && rows.length <= 2, `${rows.length} channels`);
      assert.ok(
        rows.every((row) => row.role === "client"),
        "the gateway is the client of every channel it opened",
      );
      assert.ok(
        rows.some((row) => row.counterparty === receipt.message.provider),
        "the channel the gateway opened to pay for the answer",
      );

      assert.equal(await devnet.stop(), 0);
      stopped = true;
      // Polling: the devnet's roles are not this process's children, so no exit event reaches it.
      await waitFor(
        "every devnet process to exit after SIGTERM",
        () => (processesMentioning(directory.home).length === 0 ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 100, describe: () => `pids ${processesMentioning(directory.home)}` },
      );
      assert.deepEqual(processesMentioning(directory.home), [], "no orphan process after SIGTERM");
      await assert.rejects(fetch(rpcUrl, { method: "POST", body: "{}" }), "anvil stopped with the devnet");
    } finally {
      if (!stopped) await devnet.stop();
    }
  });
});
