import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  ChainError,
  describeRevertReason,
  parseTokenAmount,
  readDeployments,
  startAnvil,
} from "../../src/chain/index.ts";
import { InvalidInputError } from "../../src/errors/index.ts";
import { repositoryRoot, temporaryHome, waitFor } from "../helpers.ts";

async function rpcAnswers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
    });
    return response.ok;
  } catch {
    return false;
  }
}

describe("chain parts", () => {
  it("the committed contract artifacts are what solc-js compiles from contracts/", () => {
    const result = spawnSync(
      process.execPath,
      [join(repositoryRoot, "scripts", "build-contracts.mjs"), "--check"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /checked \d+ contracts/);
  });

  it("reads deployments files and says what is wrong with a bad one", async () => {
    const directory = await temporaryHome("mycel-deployments-");
    try {
      const path = join(directory.home, "deployments.json");
      assert.throws(
        () => readDeployments(path),
        (error: unknown) => {
          assert.ok(error instanceof ChainError);
          assert.match(error.message, /no deployments file at/);
          assert.match(error.message, /mycel devnet/);
          return true;
        },
      );
      writeFileSync(path, "{not json");
      assert.throws(() => readDeployments(path), /is not valid JSON/);
      writeFileSync(path, JSON.stringify({ chainId: 1, contracts: {} }));
      assert.throws(() => readDeployments(path), /deployments\.json: \S+/);
    } finally {
      await directory.remove();
    }
  });

  it("describes contract refusals in words, and unknown ones by name", () => {
    assert.equal(
      describeRevertReason("ChallengePeriodActive", ["0xab", 0n]),
      "the challenge period of channel 0xab ends at 1970-01-01T00:00:00.000Z",
    );
    assert.equal(describeRevertReason("SomethingNew", [1n, "x"]), "SomethingNew(1, x)");
    assert.equal(describeRevertReason(undefined, []), "the contract reverted without a reason");
  });

  it("parses token amounts exactly and refuses malformed ones", () => {
    assert.equal(parseTokenAmount("100", 18), 100n * 10n ** 18n);
    assert.equal(parseTokenAmount("0.000001", 6), 1n);
    for (const bad of ["", "-1", "1e3", "1.", "0x10", "1.0000001"])
      assert.throws(() => parseTokenAmount(bad, 6), InvalidInputError, bad);
  });

  it("fails clearly when the anvil binary is missing", async () => {
    const previous = process.env.MYCEL_ANVIL_PATH;
    process.env.MYCEL_ANVIL_PATH = "/nonexistent/anvil";
    try {
      await assert.rejects(startAnvil({ timeoutMs: 5_000 }), (error: unknown) => {
        assert.ok(error instanceof ChainError);
        assert.match(error.message, /there is no anvil binary at \/nonexistent\/anvil/);
        assert.match(error.message, /MYCEL_ANVIL_PATH/);
        return true;
      });
    } finally {
      if (previous === undefined) delete process.env.MYCEL_ANVIL_PATH;
      else process.env.MYCEL_ANVIL_PATH = previous;
    }
  });

  it("anvil listens on loopback, stops on request, and does not outlive a killed parent", async () => {
    const anvil = await startAnvil();
    assert.match(anvil.rpcUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await rpcAnswers(anvil.rpcUrl), true);
    await anvil.stop();
    assert.equal(await rpcAnswers(anvil.rpcUrl), false);

    const script = `
      import { startAnvil } from ${JSON.stringify(join(repositoryRoot, "src", "chain", "index.ts"))};
      const anvil = await startAnvil();
      console.log("RPC " + anvil.rpcUrl);
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: repositoryRoot,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const rpcUrl = await new Promise<string>((resolve, reject) => {
      let output = "";
      parent.stdout.on("data", (chunk) => {
        output += chunk;
        const match = /RPC (\S+)/.exec(output);
        if (match) resolve(match[1] as string);
      });
      parent.once("exit", (code) => reject(new Error(`parent exited ${code}: ${output}`)));
    });
    assert.equal(await rpcAnswers(rpcUrl), true);
    parent.kill("SIGKILL");
    // Polling: anvil is the killed parent's child, not this process's, so only its RPC port tells that it is gone.
    await waitFor(
      "anvil to stop after its parent was killed",
      async () => ((await rpcAnswers(rpcUrl)) ? undefined : true),
      {
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );
    assert.equal(await rpcAnswers(rpcUrl), false, "anvil stopped after its parent was killed");
  });
});
