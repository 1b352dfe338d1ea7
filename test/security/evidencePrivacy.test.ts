/**
 * Conversations stay with their client (issue 15, finding 5), on a real devnet (anvil, provider, validator and
 * gateway processes): an anonymous libp2p peer, its own process, asks the provider for the evidence of a real
 * request (its id read from the gateway's public receipts list) with no sample, a forged one and someone else's,
 * and learns nothing; the validator still audits and the gateway still gets `mycel.evidence`. And what the run
 * stored under MYCEL_HOME (databases, their -wal/-shm, keystores) is readable by its owner only.
 */
import assert from "node:assert/strict";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import { devPrivateKey } from "../../src/identity/index.ts";
import { type SignedReceipt, signAuditSample } from "../../src/protocol/index.ts";
import {
  repositoryRoot,
  type ServeProcess,
  startMycelServer,
  startRole,
  temporaryHome,
  waitFor,
} from "../helpers.ts";

const attacker = join(repositoryRoot, "test", "fixtures", "attackers", "evidenceThief.ts");
const secret = "my account number is 4417-purple-giraffe";

type Answer = {
  choices: { message: { content: string } }[];
  mycel: { request_id: Hex; receipts: SignedReceipt[]; evidence?: { promptTokens?: number[] } };
};

/** Every file under `folder`, recursively. */
function filesUnder(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

describe("conversations stay private: evidence and stored data (devnet)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let devnet: ServeProcess;
  let model: string;

  const ask = async (content: string, mycel: Record<string, unknown>) => {
    const response = await fetch(`${devnet.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content }], max_tokens: 8, mycel }),
    });
    assert.equal(response.status, 200, await response.clone().text());
    return (await response.json()) as Answer;
  };

  before(async () => {
    directory = await temporaryHome("mycel-privacy-");
    devnet = await startMycelServer(["devnet", "--providers", "1", "--port", "0", "--rpc-port", "0"], {
      home: directory.home,
      timeoutMs: 120_000,
    });
    const models = (await (await fetch(`${devnet.url}/v1/models`)).json()) as { data: { id: string }[] };
    model = models.data[0]?.id as string;
  });
  after(async () => {
    await devnet?.stop();
    await directory?.remove();
  });

  it("refuses an anonymous peer the evidence of a real request, with no, a forged or another's sample; the client and the validator still get it", async () => {
    const target = await ask(secret, { include_evidence: true, audit: true });
    assert.ok(
      target.mycel.evidence?.promptTokens?.length,
      "the gateway, the request's client, got mycel.evidence",
    );
    const other = await ask("What is a mushroom?", {});
    // What the attacker reads: the request ids the gateway lists to anyone.
    const listed = (await (await fetch(`${devnet.url}/mycel/v1/receipts`)).json()) as {
      data: { request_id: string }[];
    };
    assert.ok(listed.data.some((entry) => entry.request_id === target.mycel.request_id.toLowerCase()));

    const providerMultiaddr =
      /\[provider-1\].*listen=(\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/[1-9A-Za-z]+)/.exec(devnet.output())?.[1];
    assert.ok(providerMultiaddr, "the provider logged where it listens");
    // Someone else's genuine sample: the other request's, signed by its client (the devnet gateway's key).
    const othersSample = await signAuditSample({
      privateKey: devPrivateKey("devnet-gateway"),
      sample: {
        request_id: other.mycel.request_id,
        provider_peer_id: providerMultiaddr.split("/p2p/")[1] as string,
        request: {
          model_hash: other.mycel.receipts[0]?.message.modelHash as string,
          kind: "chat",
          messages: [{ role: "user", content: "What is a mushroom?" }],
          temperature: 1,
          top_p: 1,
          top_k: 0,
          seed: 1,
          stop: [],
        },
        receipt: other.mycel.receipts[0] as SignedReceipt,
      },
    });
    const sampleFile = join(directory.home, "others-sample.json");
    writeFileSync(sampleFile, JSON.stringify(othersSample));

    const thief = await startRole(
      ["--import", "tsx", attacker, devnet.url, providerMultiaddr, target.mycel.request_id, sampleFile],
      { timeoutMs: 60_000 },
    );
    await thief.stop();
    const replies = thief.ready.replies as {
      attempt: string;
      reply: { type?: string; code?: string; message?: string };
    }[];
    assert.deepEqual(
      replies.map((entry) => entry.attempt),
      ["request id only", "forged sample", "someone else's sample", "never served"],
    );
    const unknown = replies.at(-1)?.reply;
    assert.equal(unknown?.code, "evidence_not_found");
    const withoutIds = (text = "") => text.replace(/0x[0-9a-fA-F]{64}/g, "<id>");
    for (const { attempt, reply } of replies) {
      assert.equal(reply.type, "error", `${attempt}: refused`);
      assert.equal(reply.code, "evidence_not_found", `${attempt}: the code of a request never served`);
      assert.equal(withoutIds(reply.message), withoutIds(unknown?.message), `${attempt}: the same words`);
      const text = JSON.stringify(reply);
      assert.ok(
        !text.includes("purple-giraffe") && !text.includes("promptTokens"),
        `${attempt}: nothing readable`,
      );
    }

    // The validator the gateway sampled the request to still fetched the evidence and audited it.
    const audit = await waitFor(
      "the validator's verdict on the sampled request",
      async () => {
        const detail = (await (
          await fetch(`${devnet.url}/mycel/v1/receipts/${target.mycel.request_id}`)
        ).json()) as {
          summaries: { audit: { verdict: string; reasons: { code: string }[] } | null }[];
        };
        return detail.summaries[0]?.audit ?? undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.equal(audit.verdict, "pass", `the honest provider passes: ${JSON.stringify(audit.reasons)}`);
    // The explorer's "Load evidence": the gateway fetches it as the request's client.
    const loaded = await fetch(`${devnet.url}/mycel/v1/receipts/${target.mycel.request_id}/evidence`);
    assert.equal(loaded.status, 200, await loaded.clone().text());
    const evidence = (await loaded.json()) as { evidence: { promptTokens: number[] }[] };
    assert.ok(evidence.evidence[0]?.promptTokens.length, "the explorer loads the evidence");
  });

  it("keeps every database, WAL and keystore under MYCEL_HOME its owner's only: 0600 files in 0700 folders", () => {
    const stored = filesUnder(directory.home).filter(
      (path) => /\.sqlite(-wal|-shm)?$/.test(path) || /\/keys\/[^/]+\.json$/.test(path),
    );
    const names = stored.map((path) => relative(directory.home, path));
    for (const expected of [
      /^gateway\/receipts\.sqlite$/,
      /^provider\/0x[0-9a-f]{40}\/evidence\.sqlite$/,
      /-wal$/,
      /^keys\/devnet-gateway\.json$/,
    ])
      assert.ok(
        names.some((name) => expected.test(name)),
        `${expected} among ${names.join(", ")}`,
      );
    for (const path of stored) {
      assert.equal(
        (statSync(path).mode & 0o777).toString(8),
        "600",
        `${relative(directory.home, path)} is 0600`,
      );
      assert.equal(
        (statSync(dirname(path)).mode & 0o777).toString(8),
        "700",
        `${relative(directory.home, dirname(path))}/ is 0700`,
      );
    }
  });
});
