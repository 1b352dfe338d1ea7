import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { type Address, getAddress, type Hex } from "viem";
import { MycelError } from "../../src/errors/index.ts";
import { openPaymentStore, type PaymentStore, StaleVoucherError } from "../../src/store/index.ts";
import { undoChainBinding } from "../fixtures/legacyPaymentTables.ts";
import { repositoryRoot, temporaryHome } from "../helpers.ts";

const provider = getAddress("0x1111111111111111111111111111111111111111");
const otherProvider = getAddress("0x2222222222222222222222222222222222222222");
const client = getAddress("0x3333333333333333333333333333333333333333");
const otherClient = getAddress("0x4444444444444444444444444444444444444444");

/** A 32-byte channel id made of one repeated byte. */
const channel = (byte: string) => `0x${byte.repeat(32)}` as Hex;
/** A 65-byte signature made of one repeated byte (the store does not check signatures). */
const signature = (byte: string) => `0x${byte.repeat(65)}` as Hex;

/**
 * Lets the clock move on (a fixed wait on purpose): rows saved after it get a later millisecond timestamp, which is
 * what the ordering assertions ("received later", "newest first") are about.
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Asserts that `action` throws a StaleVoucherError naming `latest` as the stored amount. */
function assertStale(action: () => unknown, latest: bigint) {
  assert.throws(
    action,
    (error: unknown) => {
      assert.ok(error instanceof StaleVoucherError, `expected a StaleVoucherError, got ${String(error)}`);
      assert.ok(error instanceof MycelError, "a StaleVoucherError is a MycelError");
      assert.equal(error.code, "voucher_stale", "the error's code");
      assert.equal(error.latest, latest, "the error names the latest stored amount");
      return true;
    },
    "a voucher not above the stored one is refused",
  );
}

describe("payment store", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let path: string;
  let store: PaymentStore;

  before(async () => {
    directory = await temporaryHome("mycel-payments-");
    path = join(directory.home, "nested", "mycel.db");
    store = openPaymentStore({ path, chain: "test-chain" });
  });
  after(async () => {
    store?.close();
    await directory?.remove();
  });

  describe("provider side: received vouchers", () => {
    it("has no voucher for an unknown channel", () => {
      assert.equal(store.latestVoucher(channel("00")), undefined, "no voucher yet");
      assert.deepEqual(store.vouchersOf(provider), [], "no vouchers of the provider yet");
      assert.deepEqual(store.unsettledVouchers(provider), [], "nothing unsettled yet");
      assert.equal(
        store.recordSettled({ channelId: channel("00"), settledAmount: 5n }),
        undefined,
        "settling an unknown channel records nothing",
      );
      assert.equal(store.latestVoucher(channel("00")), undefined, "still no voucher");
    });

    it("saves a first voucher as unsettled and returns what it stored", () => {
      const startedAt = Date.now();
      const saved = store.saveVoucher({
        channelId: channel("a1"),
        provider: provider.toLowerCase() as Address,
        client: client.toLowerCase() as Address,
        cumulativeAmount: 100n,
        signature: signature("11"),
      });
      assert.equal(saved.channelId, channel("a1"), "the channel id");
      assert.equal(saved.provider, provider, "the provider, checksummed");
      assert.equal(saved.client, client, "the client, checksummed");
      assert.equal(saved.cumulativeAmount, 100n, "the amount");
      assert.equal(saved.signature, signature("11"), "the signature");
      assert.equal(saved.settledAmount, 0n, "nothing settled yet");
      assert.equal(saved.settledAt, undefined, "never settled");
      assert.ok(saved.receivedAt >= startedAt && saved.receivedAt <= Date.now(), "received now");
      assert.equal(saved.unsettledSince, saved.receivedAt, "unsettled since it arrived");
      assert.deepEqual(store.latestVoucher(channel("a1")), saved, "latestVoucher returns the stored row");
    });

    it("keys channels case-insensitively", () => {
      const upper = `0x${"A1".repeat(32)}` as Hex;
      assert.deepEqual(
        store.latestVoucher(upper),
        store.latestVoucher(channel("a1")),
        "an upper-case id finds the same voucher",
      );
      assertStale(
        () =>
          store.saveVoucher({
            channelId: upper,
            provider,
            client,
            cumulativeAmount: 100n,
            signature: signature("12"),
          }),
        100n,
      );
    });

    it("refuses a replay and a lower voucher with StaleVoucherError, changing nothing", () => {
      const before = store.latestVoucher(channel("a1"));
      assert.ok(before, "the voucher is stored");
      for (const cumulativeAmount of [100n, 99n, 1n, 0n]) {
        assertStale(
          () =>
            store.saveVoucher({
              channelId: channel("a1"),
              provider,
              client,
              cumulativeAmount,
              signature: signature("22"),
            }),
          100n,
        );
        assert.deepEqual(
          store.latestVoucher(channel("a1")),
          before,
          `a refused voucher for ${cumulativeAmount} left the row unchanged`,
        );
      }
    });

    it("replaces the voucher with a strictly higher one, keeping when it became unsettled", async () => {
      const first = store.latestVoucher(channel("a1"));
      assert.ok(first, "the voucher is stored");
      await sleep(5);
      const saved = store.saveVoucher({
        channelId: channel("a1"),
        provider,
        client,
        cumulativeAmount: 250n,
        signature: signature("33"),
      });
      assert.equal(saved.cumulativeAmount, 250n, "the higher amount");
      assert.equal(saved.signature, signature("33"), "the higher voucher's signature");
      assert.ok(saved.receivedAt > first.receivedAt, "received later");
      assert.equal(saved.unsettledSince, first.unsettledSince, "unsettled since the first unsettled voucher");
      assert.equal(saved.settledAmount, 0n, "still nothing settled");
      assertStale(
        () =>
          store.saveVoucher({
            channelId: channel("a1"),
            provider,
            client,
            cumulativeAmount: 100n,
            signature: signature("11"),
          }),
        250n,
      );
      assert.deepEqual(
        store.latestVoucher(channel("a1")),
        saved,
        "the replayed older voucher changed nothing",
      );
    });

    it("records what is settled, never lowering it, and lists what is unsettled", async () => {
      await sleep(5);
      store.saveVoucher({
        channelId: channel("b2"),
        provider,
        client: otherClient,
        cumulativeAmount: 40n,
        signature: signature("44"),
      });
      await sleep(5);
      store.saveVoucher({
        channelId: channel("c3"),
        provider: otherProvider,
        client,
        cumulativeAmount: 7n,
        signature: signature("55"),
      });
      assert.deepEqual(
        store.unsettledVouchers(provider).map((voucher) => voucher.channelId),
        [channel("a1"), channel("b2")],
        "the provider's unsettled vouchers, oldest unsettled first; not another provider's",
      );
      assert.deepEqual(
        store.unsettledVouchers(otherProvider).map((voucher) => voucher.channelId),
        [channel("c3")],
        "the other provider's unsettled voucher",
      );

      const partly = store.recordSettled({ channelId: channel("a1"), settledAmount: 200n });
      assert.ok(partly, "a stored channel returns its row");
      assert.equal(partly.settledAmount, 200n, "200 settled");
      assert.ok(partly.settledAt !== undefined, "settled at a time");
      assert.notEqual(partly.unsettledSince, undefined, "50 still unsettled");
      assert.deepEqual(
        store.unsettledVouchers(provider).map((voucher) => voucher.channelId),
        [channel("a1"), channel("b2")],
        "a partly settled voucher stays listed",
      );

      const lower = store.recordSettled({ channelId: channel("a1"), settledAmount: 150n });
      assert.equal(lower?.settledAmount, 200n, "a lower settled amount never lowers it");
      assert.equal(store.latestVoucher(channel("a1"))?.settledAmount, 200n, "stored settled amount is 200");

      const fully = store.recordSettled({ channelId: channel("a1"), settledAmount: 250n });
      assert.equal(fully?.settledAmount, 250n, "fully settled");
      assert.equal(fully?.unsettledSince, undefined, "nothing unsettled any more");
      assert.ok(fully?.settledAt !== undefined, "settled at a time");
      assert.deepEqual(
        store.unsettledVouchers(provider).map((voucher) => voucher.channelId),
        [channel("b2")],
        "a fully settled voucher is no longer listed",
      );
      const again = store.recordSettled({ channelId: channel("a1"), settledAmount: 100n });
      assert.equal(again?.settledAmount, 250n, "still 250 after a lower report");
      assert.equal(again?.unsettledSince, undefined, "still fully settled");
      assert.deepEqual(
        store.vouchersOf(provider).map((voucher) => voucher.channelId),
        [channel("a1"), channel("b2")],
        "vouchersOf lists settled and unsettled vouchers of the provider",
      );
    });

    it("puts a settled channel back in the unsettled list when a higher voucher arrives", () => {
      const beforeSave = Date.now();
      const saved = store.saveVoucher({
        channelId: channel("a1"),
        provider,
        client,
        cumulativeAmount: 300n,
        signature: signature("66"),
      });
      assert.equal(saved.settledAmount, 250n, "what was settled stays settled");
      assert.ok(
        saved.unsettledSince !== undefined && saved.unsettledSince >= beforeSave,
        "unsettled since the new voucher",
      );
      assert.deepEqual(
        store.unsettledVouchers(provider).map((voucher) => voucher.channelId),
        [channel("b2"), channel("a1")],
        "listed again, after the older unsettled one",
      );
    });

    it("keeps everything across a close and reopen of the file", () => {
      const vouchers = store.vouchersOf(provider);
      const others = store.vouchersOf(otherProvider);
      store.close();
      store.close();
      store = openPaymentStore({ path, chain: "test-chain" });
      assert.equal(store.path, path, "the store's path");
      assert.deepEqual(store.vouchersOf(provider), vouchers, "the provider's vouchers survive a reopen");
      assert.deepEqual(store.vouchersOf(otherProvider), others, "the other provider's vouchers survive");
      assert.equal(store.latestVoucher(channel("a1"))?.cumulativeAmount, 300n, "the latest amount survives");
      assert.equal(store.latestVoucher(channel("a1"))?.settledAmount, 250n, "the settled amount survives");
      assertStale(
        () =>
          store.saveVoucher({
            channelId: channel("a1"),
            provider,
            client,
            cumulativeAmount: 300n,
            signature: signature("66"),
          }),
        300n,
      );
    });
  });

  describe("gateway side: client channels", () => {
    it("adds a channel with nothing signed or acknowledged", () => {
      const startedAt = Date.now();
      const added = store.addChannel({
        channelId: channel("d4"),
        client: client.toLowerCase() as Address,
        provider: provider.toLowerCase() as Address,
        deposit: 1_000n,
        state: "open",
      });
      assert.deepEqual(
        { ...added, openedAt: 0 },
        {
          channelId: channel("d4"),
          client,
          provider,
          deposit: 1_000n,
          signedAmount: 0n,
          acknowledgedAmount: 0n,
          state: "open",
          openedAt: 0,
        },
        "the added row, addresses checksummed",
      );
      assert.ok(added.openedAt >= startedAt && added.openedAt <= Date.now(), "opened now");
      assert.deepEqual(store.channelsOf(client), [added], "channelsOf returns it");
      assert.deepEqual(store.channelsOf(otherClient), [], "another client has no channels");
    });

    it("refuses to add the same channel twice", () => {
      assert.throws(
        () =>
          store.addChannel({
            channelId: channel("d4"),
            client,
            provider,
            deposit: 5n,
            state: "open",
          }),
        /UNIQUE constraint failed/,
        "a channel id is unique",
      );
      assert.equal(store.channelsOf(client)[0]?.deposit, 1_000n, "the first row is kept");
    });

    it("raises the signed and acknowledged amounts and never lowers them", () => {
      const id = channel("d4");
      const row = () => store.channelsOf(client).find((entry) => entry.channelId === id);
      store.recordSigned({ channelId: id, amount: 300n });
      assert.equal(row()?.signedAmount, 300n, "signed raised to 300");
      store.recordSigned({ channelId: id, amount: 200n });
      assert.equal(row()?.signedAmount, 300n, "a lower signed amount is ignored");
      store.recordSigned({ channelId: `0x${"D4".repeat(32)}` as Hex, amount: 400n });
      assert.equal(row()?.signedAmount, 400n, "an upper-case id raises the same row");
      store.recordAcknowledged({ channelId: id, amount: 250n });
      assert.equal(row()?.acknowledgedAmount, 250n, "acknowledged raised to 250");
      store.recordAcknowledged({ channelId: id, amount: 100n });
      assert.equal(row()?.acknowledgedAmount, 250n, "a lower acknowledged amount is ignored");
      assert.equal(row()?.signedAmount, 400n, "acknowledging leaves the signed amount alone");
      store.recordSigned({ channelId: channel("ee"), amount: 1n });
      store.recordAcknowledged({ channelId: channel("ee"), amount: 1n });
      assert.equal(store.channelsOf(client).length, 1, "raising an unknown channel adds no row");
    });

    it("lists a client's channels newest first", async () => {
      await sleep(5);
      const second = store.addChannel({
        channelId: channel("0f"),
        client,
        provider: otherProvider,
        deposit: 10n,
        state: "open",
      });
      await sleep(5);
      const third = store.addChannel({
        channelId: channel("05"),
        client,
        provider,
        deposit: 20n,
        state: "closing",
      });
      store.addChannel({
        channelId: channel("06"),
        client: otherClient,
        provider,
        deposit: 30n,
        state: "open",
      });
      assert.ok(second.openedAt < third.openedAt, "opened one after the other");
      assert.deepEqual(
        store.channelsOf(client).map((entry) => entry.channelId),
        [channel("05"), channel("0f"), channel("d4")],
        "newest first, whatever the ids, only this client's",
      );
      assert.deepEqual(
        store.channelsOf(otherClient).map((entry) => entry.channelId),
        [channel("06")],
        "the other client's channel",
      );
    });

    it("updates deposit and state, each alone or together", () => {
      const id = channel("d4");
      const row = () => store.channelsOf(client).find((entry) => entry.channelId === id);
      const before = row();
      store.updateChannel({ channelId: id, deposit: 1_500n });
      assert.deepEqual(row(), { ...before, deposit: 1_500n }, "only the deposit changed");
      store.updateChannel({ channelId: id, state: "closing" });
      assert.deepEqual(row(), { ...before, deposit: 1_500n, state: "closing" }, "only the state changed");
      store.updateChannel({ channelId: `0x${"D4".repeat(32)}` as Hex, deposit: 2_000n, state: "closed" });
      assert.deepEqual(
        row(),
        { ...before, deposit: 2_000n, state: "closed" },
        "both changed, by an upper-case id",
      );
      store.updateChannel({ channelId: id });
      assert.deepEqual(
        row(),
        { ...before, deposit: 2_000n, state: "closed" },
        "an empty update changes nothing",
      );
      assert.throws(
        () => store.updateChannel({ channelId: id, state: "gone" as "closed" }),
        /CHECK constraint failed/,
        "a state outside open, closing, closed is refused by the schema",
      );
      assert.equal(row()?.state, "closed", "the refused state was not written");
    });

    it("keeps what a process wrote before it was killed without closing the store", () => {
      const crashPath = join(directory.home, "crashed.db");
      const storeModule = pathToFileURL(join(repositoryRoot, "src", "store", "index.ts")).href;
      const script = `
        import { openPaymentStore } from ${JSON.stringify(storeModule)};
        const store = openPaymentStore({ path: ${JSON.stringify(crashPath)}, chain: "test-chain" });
        store.saveVoucher({ channelId: "${channel("c7")}", provider: "${provider}", client: "${client}",
          cumulativeAmount: 77n, signature: "${signature("77")}" });
        store.addChannel({ channelId: "${channel("c8")}", client: "${client}", provider: "${provider}",
          deposit: 800n, state: "open" });
        store.recordSigned({ channelId: "${channel("c8")}", amount: 80n });
        process.kill(process.pid, "SIGKILL");
      `;
      const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        cwd: repositoryRoot,
        encoding: "utf8",
        timeout: 20_000,
      });
      assert.equal(child.signal, "SIGKILL", `the writer was killed (${child.stderr})`);
      const reopened = openPaymentStore({ path: crashPath, chain: "test-chain" });
      try {
        assert.equal(reopened.latestVoucher(channel("c7"))?.cumulativeAmount, 77n, "the voucher survived");
        assert.equal(reopened.channelsOf(client)[0]?.signedAmount, 80n, "the signed amount survived");
        assert.equal(reopened.channelsOf(client)[0]?.deposit, 800n, "the channel survived");
      } finally {
        reopened.close();
      }
    });

    it("keeps the channels across a close and reopen of the file", () => {
      const channels = store.channelsOf(client);
      const others = store.channelsOf(otherClient);
      store.close();
      store = openPaymentStore({ path, chain: "test-chain" });
      assert.deepEqual(store.channelsOf(client), channels, "the client's channels survive a reopen");
      assert.deepEqual(store.channelsOf(otherClient), others, "the other client's channels survive");
      assert.equal(store.latestVoucher(channel("a1"))?.cumulativeAmount, 300n, "the vouchers survive too");
    });
  });

  describe("channels bound to their chain", () => {
    const sameId = channel("b7");

    it("keeps the rows of each chain apart, under the same channel id", () => {
      const bound = join(directory.home, "bound.db");
      const first = openPaymentStore({ path: bound, chain: "31337:0xcontract:0xgenesis-one" });
      first.addChannel({ channelId: sameId, client, provider, deposit: 100n, state: "open" });
      first.recordSigned({ channelId: sameId, amount: 90n });
      first.saveVoucher({
        channelId: sameId,
        provider,
        client,
        cumulativeAmount: 90n,
        signature: signature("90"),
      });
      first.close();
      const second = openPaymentStore({ path: bound, chain: "31337:0xcontract:0xgenesis-two" });
      try {
        assert.deepEqual(second.channelsOf(client), [], "another chain's channel is not seen");
        assert.equal(second.latestVoucher(sameId), undefined, "nor its voucher");
        assert.deepEqual(second.unsettledVouchers(provider), [], "which is never settled here");
        const row = second.addChannel({ channelId: sameId, client, provider, deposit: 5n, state: "open" });
        assert.equal(row.signedAmount, 0n, "the same id on this chain starts from nothing");
        const voucher = second.saveVoucher({
          channelId: sameId,
          provider,
          client,
          cumulativeAmount: 3n,
          signature: signature("03"),
        });
        assert.equal(
          voucher.cumulativeAmount,
          3n,
          "a lower voucher than the other chain's is not stale here",
        );
      } finally {
        second.close();
      }
      const again = openPaymentStore({ path: bound, chain: "31337:0xcontract:0xgenesis-one" });
      try {
        assert.equal(again.channelsOf(client)[0]?.signedAmount, 90n, "the first chain's row is unchanged");
        assert.equal(again.latestVoucher(sameId)?.cumulativeAmount, 90n, "and its voucher too");
      } finally {
        again.close();
      }
    });

    it("upgrades a store from before bindings: its rows are bound to no chain and never seen", () => {
      const legacyPath = join(directory.home, "legacy.db");
      openPaymentStore({ path: legacyPath, chain: "any" }).close();
      const raw = new Database(legacyPath);
      undoChainBinding(raw);
      raw
        .prepare(
          `INSERT INTO client_channels VALUES ('${sameId}', '${client}', '${provider}', '100', '40', '40', 'open', 1)`,
        )
        .run();
      raw
        .prepare(
          `INSERT INTO received_vouchers (channel_id, provider, client, cumulative_amount, signature, received_at,
             settled_amount, unsettled_since) VALUES ('${sameId}', '${provider}', '${client}', '40', '0x', 1, '0', 1)`,
        )
        .run();
      raw.close();
      const upgraded = openPaymentStore({ path: legacyPath, chain: "31337:0xcontract:0xgenesis" });
      try {
        assert.deepEqual(upgraded.channelsOf(client), [], "an unbound channel is not reused");
        assert.deepEqual(upgraded.unsettledVouchers(provider), [], "an unbound voucher is not settled");
        upgraded.addChannel({ channelId: sameId, client, provider, deposit: 1n, state: "open" });
        assert.equal(upgraded.channelsOf(client).length, 1, "a channel of this chain under the same id");
      } finally {
        upgraded.close();
      }
      const check = new Database(legacyPath, { readonly: true });
      try {
        const rows = check.prepare("SELECT chain, signed_amount FROM client_channels ORDER BY chain").all();
        assert.deepEqual(
          rows,
          [
            { chain: "", signed_amount: "40" },
            { chain: "31337:0xcontract:0xgenesis", signed_amount: "0" },
          ],
          "the old row is kept (unbound) beside the new one",
        );
      } finally {
        check.close();
      }
    });

    it("refuses a store without a chain", () => {
      assert.throws(() => openPaymentStore({ path: join(directory.home, "none.db"), chain: "" }), /chain/);
    });
  });
});
