import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { generatePrivateKey } from "viem/accounts";
import { createKeystore, KeystoreNotFoundError } from "../../src/identity/index.ts";
import { chooseViewKey, devnetGatewayKeyName } from "../../src/node/index.ts";
import { temporaryHome } from "../helpers.ts";

describe("which key a read-only command uses", () => {
  let directory: { home: string; remove: () => Promise<void> };
  const password = "a long enough password";
  const add = (name: string) =>
    createKeystore({ home: directory.home, name, password, privateKey: generatePrivateKey() });
  before(async () => {
    directory = await temporaryHome("mycel-keys-");
  });
  after(() => directory.remove());

  it("with no key at all, says so and how to make one", async () => {
    await assert.rejects(chooseViewKey({ home: directory.home }), (error) => {
      assert.ok(error instanceof KeystoreNotFoundError);
      assert.match(error.message, /no keystore "default"/);
      assert.match(error.message, /mycel init/);
      return true;
    });
  });

  it("on a devnet machine without `default`, uses the devnet's gateway key and says so", async () => {
    await add("devnet-provider-1");
    await add(devnetGatewayKeyName);
    const chosen = await chooseViewKey({ home: directory.home });
    assert.equal(chosen.name, devnetGatewayKeyName);
    assert.match(
      chosen.note ?? "",
      /showing the devnet's gateway key "devnet-gateway" \(pass --key <name> for another: devnet-gateway, devnet-provider-1\)/,
    );
  });

  it("uses the key named, and `default` once it exists, without a note", async () => {
    assert.deepEqual(await chooseViewKey({ home: directory.home, requested: "devnet-provider-1" }), {
      name: "devnet-provider-1",
    });
    await add("default");
    assert.deepEqual(await chooseViewKey({ home: directory.home }), { name: "default" });
  });

  it("lists the keys there are when neither `default` nor the devnet's is there", async () => {
    const other = await temporaryHome("mycel-keys-other-");
    try {
      await createKeystore({ home: other.home, name: "alice", password, privateKey: generatePrivateKey() });
      await assert.rejects(chooseViewKey({ home: other.home }), /pass --key <name>: the keys here are alice/);
    } finally {
      await other.remove();
    }
  });
});
