import assert from "node:assert/strict";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { privateKeyToAccount } from "viem/accounts";
import { InvalidInputError, MycelError } from "../../src/errors/index.ts";
import {
  createKeystore,
  devPrivateKey,
  InvalidKeystoreError,
  KeystoreExistsError,
  KeystoreNotFoundError,
  loadKeystore,
  PasswordRequiredError,
  PromptCancelledError,
  promptPassword,
  resolvePassword,
  signPeerBinding,
  verifyPeerBinding,
  WrongPasswordError,
} from "../../src/identity/index.ts";
import { temporaryHome } from "../helpers.ts";

const password = "correct horse battery staple";
const importedKey = devPrivateKey("keystore-test");

describe("keystore", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let created: { address: `0x${string}`; path: string };

  before(async () => {
    directory = await temporaryHome("mycel-keystore-");
    created = await createKeystore({ home: directory.home, password });
  });
  after(() => directory.remove());

  it("creates a key and loads it back with the password", async () => {
    assert.equal(created.path, join(directory.home, "keys", "default.json"));
    const loaded = await loadKeystore({ home: directory.home, password });
    assert.equal(loaded.address, created.address);
    assert.equal(privateKeyToAccount(loaded.privateKey).address, created.address);
  });

  it("imports a given key under another name", async () => {
    const result = await createKeystore({
      home: directory.home,
      name: "imported",
      password,
      privateKey: importedKey,
    });
    assert.equal(result.address, privateKeyToAccount(importedKey).address);
    const loaded = await loadKeystore({ home: directory.home, name: "imported", password });
    assert.equal(loaded.privateKey, importedKey);
  });

  it("stores the key encrypted, in a 0600 file inside a 0700 folder", async () => {
    const path = join(directory.home, "keys", "imported.json");
    const text = await readFile(path, "utf8");
    assert.ok(!text.toLowerCase().includes(importedKey.slice(2).toLowerCase()), "private key in clear");
    const file = JSON.parse(text);
    assert.equal(file.version, 1);
    assert.equal(file.address, privateKeyToAccount(importedKey).address);
    assert.deepEqual(
      { name: file.kdf.name, n: file.kdf.n, r: file.kdf.r, p: file.kdf.p },
      { name: "scrypt", n: 32768, r: 8, p: 1 },
    );
    assert.match(file.kdf.salt, /^[0-9a-f]{32}$/);
    assert.equal(file.cipher.name, "aes-256-gcm");
    assert.match(file.cipher.iv, /^[0-9a-f]{24}$/);
    assert.match(file.cipher.tag, /^[0-9a-f]{32}$/);
    assert.match(file.ciphertext, /^[0-9a-f]{64}$/);
    if (process.platform !== "win32") {
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await stat(join(directory.home, "keys"))).mode & 0o777, 0o700);
    }
  });

  it("rejects a wrong password with WrongPasswordError that names MYCEL_PASSWORD", async () => {
    await assert.rejects(loadKeystore({ home: directory.home, password: "wrong" }), (error: unknown) => {
      assert.ok(error instanceof WrongPasswordError);
      assert.match(error.hint ?? "", /MYCEL_PASSWORD/);
      assert.ok(!error.message.includes(password));
      return true;
    });
  });

  it("refuses to overwrite an existing keystore and leaves it unchanged", async () => {
    const before = await readFile(created.path, "utf8");
    await assert.rejects(createKeystore({ home: directory.home, password: "other" }), (error: unknown) => {
      assert.ok(error instanceof KeystoreExistsError);
      assert.match(error.hint ?? "", /--key/);
      return true;
    });
    assert.equal(await readFile(created.path, "utf8"), before);
  });

  it("reports a missing keystore with a hint to run mycel init", async () => {
    await assert.rejects(
      loadKeystore({ home: directory.home, name: "nobody", password }),
      (error: unknown) => {
        assert.ok(error instanceof KeystoreNotFoundError);
        assert.match(error.hint ?? "", /mycel init/);
        return true;
      },
    );
  });

  it("rejects a tampered ciphertext, address or corrupt file", async () => {
    const file = JSON.parse(await readFile(join(directory.home, "keys", "imported.json"), "utf8"));
    const write = (name: string, content: unknown) =>
      writeFile(
        join(directory.home, "keys", `${name}.json`),
        typeof content === "string" ? content : JSON.stringify(content),
      );

    const flipped = (file.ciphertext[0] === "0" ? "1" : "0") + file.ciphertext.slice(1);
    await write("tampered", { ...file, ciphertext: flipped });
    await assert.rejects(
      loadKeystore({ home: directory.home, name: "tampered", password }),
      WrongPasswordError,
    );

    const other = privateKeyToAccount(devPrivateKey("someone else")).address;
    await write("readdressed", { ...file, address: other });
    await assert.rejects(
      loadKeystore({ home: directory.home, name: "readdressed", password }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidKeystoreError);
        assert.match(error.message, /stored address/);
        return true;
      },
    );

    await write("truncated", JSON.stringify(file).slice(0, 40));
    await assert.rejects(
      loadKeystore({ home: directory.home, name: "truncated", password }),
      InvalidKeystoreError,
    );
    await write("short", { ...file, ciphertext: file.ciphertext.slice(2) });
    await assert.rejects(
      loadKeystore({ home: directory.home, name: "short", password }),
      InvalidKeystoreError,
    );
    await write("future", { ...file, version: 2 });
    await assert.rejects(loadKeystore({ home: directory.home, name: "future", password }), /version 2/);
  });

  it("rejects bad names, empty passwords and invalid keys to import", async () => {
    await assert.rejects(
      createKeystore({ home: directory.home, name: "../evil", password }),
      InvalidInputError,
    );
    await assert.rejects(
      createKeystore({ home: directory.home, name: "empty", password: "" }),
      InvalidInputError,
    );
    await assert.rejects(
      createKeystore({ home: directory.home, name: "zero", password, privateKey: `0x${"0".repeat(64)}` }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidInputError);
        assert.ok(!error.message.includes("0".repeat(64)));
        return true;
      },
    );
  });
});

describe("password", () => {
  it("prefers MYCEL_PASSWORD over the prompt", async () => {
    let asked = false;
    const prompt = async () => {
      asked = true;
      return "typed";
    };
    assert.equal(await resolvePassword({ env: { MYCEL_PASSWORD: "from-env" }, prompt }), "from-env");
    assert.equal(asked, false);
    assert.equal(await resolvePassword({ env: {}, prompt }), "typed");
    assert.equal(asked, true);
  });

  it("throws PasswordRequiredError naming MYCEL_PASSWORD when there is no password source", async () => {
    await assert.rejects(resolvePassword({ env: {} }), (error: unknown) => {
      assert.ok(error instanceof PasswordRequiredError);
      assert.match(error.message, /MYCEL_PASSWORD/);
      return true;
    });
    const notTty = Object.assign(new PassThrough(), { isTTY: false }) as unknown as NodeJS.ReadStream;
    await assert.rejects(promptPassword("Password: ", { input: notTty }), PasswordRequiredError);
  });

  it("reads a line on a terminal without echoing it", async () => {
    const rawModes: boolean[] = [];
    const makeTty = () =>
      Object.assign(new PassThrough(), {
        isTTY: true,
        isRaw: false,
        setRawMode(mode: boolean) {
          rawModes.push(mode);
          return this;
        },
      }) as unknown as NodeJS.ReadStream & PassThrough;
    const output = new PassThrough();
    let echoed = "";
    output.on("data", (chunk) => {
      echoed += chunk;
    });

    const input = makeTty();
    const answer = promptPassword("Password: ", { input, output });
    input.write("sex");
    input.write("\u007fcret\r");
    assert.equal(await answer, "secret");
    assert.deepEqual(rawModes, [true, false]);
    assert.equal(echoed, "Password: \n");

    const cancelled = makeTty();
    const pending = promptPassword("Password: ", { input: cancelled, output });
    cancelled.write("abc\u0003");
    await assert.rejects(pending, PromptCancelledError);
  });
});

describe("dev keys", () => {
  it("are deterministic per label and different across labels", () => {
    assert.equal(devPrivateKey("provider-1"), devPrivateKey("provider-1"));
    assert.notEqual(devPrivateKey("provider-1"), devPrivateKey("provider-2"));
    assert.match(devPrivateKey("gateway"), /^0x[0-9a-f]{64}$/);
    privateKeyToAccount(devPrivateKey("gateway"));
  });
});

describe("peer binding", () => {
  const peerId = "12D3KooWGRUBs1yVVhyofH7SqTVQKDqeXb3nFnSBjGEnyvPhZzfG";
  const otherPeerId = "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3";
  const privateKey = devPrivateKey("peer-binding");

  it("verifies for the signing address and peer id", async () => {
    const binding = await signPeerBinding({ privateKey, peerId });
    assert.equal(binding.address, privateKeyToAccount(privateKey).address);
    assert.equal(binding.peerId, peerId);
    assert.equal(await verifyPeerBinding(binding), true);
  });

  it("fails for another peer id, another address or a bad signature, without throwing", async () => {
    const binding = await signPeerBinding({ privateKey, peerId });
    assert.equal(await verifyPeerBinding({ ...binding, peerId: otherPeerId }), false);
    const other = privateKeyToAccount(devPrivateKey("someone else")).address;
    assert.equal(await verifyPeerBinding({ ...binding, address: other }), false);
    assert.equal(await verifyPeerBinding({ ...binding, signature: "0x1234" }), false);
    assert.equal(
      await verifyPeerBinding({ ...binding, address: "0xnot-an-address" as `0x${string}` }),
      false,
    );
  });

  it("refuses to sign an invalid peer id", async () => {
    await assert.rejects(signPeerBinding({ privateKey, peerId: "" }), MycelError);
    await assert.rejects(signPeerBinding({ privateKey, peerId: `${peerId}\nextra` }), InvalidInputError);
  });
});
