import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { type Abi, type Address, type Hex, parseEventLogs, zeroHash } from "viem";
import {
  addProviderStake,
  formatLineage,
  getModelEntry,
  getModelLineage,
  getProviderRecord,
  getTokenBalance,
  isSpdxExpression,
  type LineageNode,
  listStakedProviders,
  type ModelEntry,
  type ModelParent,
  type ModelRelation,
  modelRegistryAbi,
  modelRelations,
  type ProviderOffer,
  type ProviderRecord,
  parseModelParent,
  providerRegistryAbi,
  registerModel,
  registerProvider,
  requestProviderUnbond,
  sendContractTransaction,
  withdrawProviderStake,
} from "../../src/chain/index.ts";
import { InvalidInputError } from "../../src/errors/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import { assertRefused, type Call, type Loose, refusalAt } from "../fixtures/chain/refusals.ts";

/** A model hash as the product makes them: the sha256 of the (here imaginary) weights file. */
const modelHashOf = (label: string): Hex =>
  `0x${createHash("sha256").update(`weights:${label}`).digest("hex")}`;

function eventsOf(
  abi: Abi,
  address: Address,
  receipt: { logs: Parameters<typeof parseEventLogs>[0]["logs"] },
) {
  return parseEventLogs({ abi, logs: receipt.logs })
    .filter((log) => log.address.toLowerCase() === address.toLowerCase())
    .map((log) => ({ eventName: log.eventName, args: log.args as Record<string, unknown> }));
}

async function blockTime(chain: LocalChain, blockNumber: bigint) {
  return (await chain.deployer.publicClient.getBlock({ blockNumber })).timestamp;
}

describe("chain registries (real anvil)", () => {
  let chain: LocalChain;

  before(async () => {
    chain = await startLocalChain();
  });
  after(async () => {
    await chain?.stop();
  });

  describe("ModelRegistry", () => {
    let alice: TestAccount;
    let bob: TestAccount;
    let carol: TestAccount;
    let registry: Address;

    /** What this test registered, in registration order: the reference the registry must match. */
    const registered: (Omit<ModelEntry, "children"> & { label: string })[] = [];
    const hashOf = (label: string) => {
      const model = registered.find((entry) => entry.label === label);
      assert.ok(model, `model ${label} was registered`);
      return model.modelHash;
    };

    function expectedEntry(modelHash: Hex): ModelEntry {
      const model = registered.find((entry) => entry.modelHash === modelHash);
      assert.ok(model, "model");
      const { label: _label, ...entry } = model;
      return {
        ...entry,
        parents: entry.parents.map((parent) => ({ ...parent })),
        children: registered
          .filter((child) => child.parents.some((parent) => parent.modelHash === modelHash))
          .map((child) => child.modelHash),
      };
    }

    function expectedLineage(
      modelHash: Hex,
      maxDepth = 16,
      depth = 0,
      relation: ModelRelation | undefined = undefined,
    ): LineageNode {
      const entry = expectedEntry(modelHash);
      return {
        ...entry,
        relationToChild: relation,
        ancestors:
          depth >= maxDepth
            ? []
            : entry.parents.map((parent) =>
                expectedLineage(parent.modelHash, maxDepth, depth + 1, parent.relation),
              ),
      };
    }

    /** Registers through registerModel and checks the receipt's events against what was asked. */
    async function register(
      account: TestAccount,
      spec: { label: string; name: string; license: string; metadataUri?: string; parents?: ModelParent[] },
    ) {
      const modelHash = modelHashOf(spec.label);
      const parents = spec.parents ?? [];
      const sent = await registerModel(account.connection, {
        deployments: chain.deployments,
        modelHash,
        name: spec.name,
        license: spec.license,
        metadataUri: spec.metadataUri,
        parents,
      });
      assert.deepEqual(eventsOf(modelRegistryAbi, registry, sent.receipt), [
        {
          eventName: "ModelRegistered",
          args: {
            modelHash,
            publisher: account.address,
            name: spec.name,
            license: spec.license,
            metadataUri: spec.metadataUri ?? "",
          },
        },
        ...parents.map((parent) => ({
          eventName: "ModelDerived",
          args: {
            modelHash,
            parentHash: parent.modelHash,
            relation: modelRelations.indexOf(parent.relation),
          },
        })),
      ]);
      registered.push({
        label: spec.label,
        modelHash,
        name: spec.name,
        metadataUri: spec.metadataUri ?? "",
        license: spec.license,
        publisher: account.address,
        registeredAt: new Date(Number(await blockTime(chain, sent.receipt.blockNumber)) * 1000),
        deprecated: false,
        parents,
      });
      return modelHash;
    }

    const read = <T>(functionName: string, args: readonly unknown[] = []) =>
      chain.deployer.publicClient.readContract({
        address: registry,
        abi: modelRegistryAbi,
        functionName,
        args,
      } as Loose) as Promise<T>;

    /** Everything the registry stores, read back through its views. */
    async function snapshot() {
      const count = await read<bigint>("modelCount");
      const hashes = await read<Hex[]>("modelHashes", [0n, count + 10n]);
      const entries = await Promise.all(
        hashes.map(async (modelHash) => ({
          model: await read("getModel", [modelHash]),
          parents: await read("getParents", [modelHash]),
          children: await read("getChildren", [modelHash]),
        })),
      );
      return { count, hashes, entries };
    }

    const registerCall = (
      modelHash: Hex,
      name: string,
      metadataUri: string,
      license: string,
      parents: { modelHash: Hex; relation: number }[] = [],
    ): Call => ({
      address: registry,
      abi: modelRegistryAbi,
      functionName: "register",
      args: [modelHash, name, metadataUri, license, parents],
    });

    before(async () => {
      // One at a time: the fixture funds each account from the deployer's key.
      alice = await chain.account("models-alice");
      bob = await chain.account("models-bob");
      carol = await chain.account("models-carol");
      registry = chain.deployments.contracts.modelRegistry;
    });

    it("registers a base model with the sender as publisher and emits ModelRegistered", async () => {
      const base = await register(alice, {
        label: "base",
        name: "Base 7B",
        license: "Apache-2.0",
        metadataUri: "ipfs://base-7b",
      });
      assert.equal(await read("isRegistered", [base]), true);
      assert.equal(await read("isRegistered", [modelHashOf("never registered")]), false);
      assert.deepEqual(
        await getModelEntry(alice.connection, { deployments: chain.deployments, modelHash: base }),
        {
          modelHash: base,
          name: "Base 7B",
          metadataUri: "ipfs://base-7b",
          license: "Apache-2.0",
          publisher: alice.address,
          registeredAt: registered[0]?.registeredAt,
          deprecated: false,
          parents: [],
          children: [],
        },
      );
      assert.equal(await read("modelCount"), 1n);
      assert.deepEqual(await read("modelHashes", [0n, 10n]), [base]);
      assert.equal(
        await getModelEntry(alice.connection, {
          deployments: chain.deployments,
          modelHash: modelHashOf("never registered"),
        }),
        undefined,
      );
    });

    it("registers children with every relation, a two-parent merge included, and links parents to children", async () => {
      const base = hashOf("base");
      const finetune = await register(bob, {
        label: "finetune",
        name: "Base 7B Chat",
        license: "Apache-2.0",
        parents: [{ modelHash: base, relation: "finetune" }],
      });
      const quantize = await register(carol, {
        label: "quantize",
        name: "Base 7B Chat Q4_K_M",
        license: "Apache-2.0",
        metadataUri: "https://example.org/q4.json",
        parents: [{ modelHash: finetune, relation: "quantize" }],
      });
      const distill = await register(alice, {
        label: "distill",
        name: "Base 1B Distilled",
        license: "MIT",
        parents: [{ modelHash: base, relation: "distill" }],
      });
      const merge = await register(bob, {
        label: "merge",
        name: "Chat x Distilled Merge",
        license: "MIT OR Apache-2.0",
        parents: [
          { modelHash: finetune, relation: "merge" },
          { modelHash: distill, relation: "merge" },
        ],
      });
      const adapter = await register(carol, {
        label: "adapter",
        name: "Merge + LoRA",
        license: "Apache-2.0",
        parents: [{ modelHash: merge, relation: "adapter" }],
      });
      const convert = await register(alice, {
        label: "convert",
        name: "Base 7B Chat Q4_K_M (MLX)",
        license: "Apache-2.0",
        parents: [{ modelHash: quantize, relation: "convert" }],
      });
      // Every relation is used at least once.
      assert.deepEqual(
        new Set(registered.flatMap((model) => model.parents.map((parent) => parent.relation))),
        new Set(modelRelations),
      );
      for (const model of registered) {
        const entry = await getModelEntry(bob.connection, {
          deployments: chain.deployments,
          modelHash: model.modelHash,
        });
        assert.deepEqual(entry, expectedEntry(model.modelHash), `entry of ${model.label}`);
      }
      // Spelled out for the tree's shape (the loop above compares with the reference).
      const children = (modelHash: Hex) => read<Hex[]>("getChildren", [modelHash]);
      assert.deepEqual(await children(base), [finetune, distill]);
      assert.deepEqual(await children(finetune), [quantize, merge]);
      assert.deepEqual(await children(distill), [merge]);
      assert.deepEqual(await children(merge), [adapter]);
      assert.deepEqual(await children(quantize), [convert]);
      assert.deepEqual(await children(convert), []);
      assert.equal(await read("modelCount"), 7n);
      assert.deepEqual(await read("modelHashes", [0n, 100n]), [
        base,
        finetune,
        quantize,
        distill,
        merge,
        adapter,
        convert,
      ]);
      assert.deepEqual(await read("modelHashes", [2n, 3n]), [quantize, distill, merge]);
      assert.deepEqual(await read("modelHashes", [6n, 5n]), [convert]);
      assert.deepEqual(await read("modelHashes", [7n, 5n]), []);
      assert.deepEqual(
        (await read<{ publisher: Address }>("getModel", [merge])).publisher,
        bob.address,
        "the publisher is the sender",
      );
    });

    it("getModelLineage and formatLineage show the ancestry tree (a shared ancestor under both paths)", async () => {
      const deployments = chain.deployments;
      const adapter = hashOf("adapter");
      const lineage = await getModelLineage(carol.connection, { deployments, modelHash: adapter });
      assert.ok(lineage, "lineage");
      assert.deepEqual(lineage, expectedLineage(adapter));
      const [merge, finetune, distill, base] = ["merge", "finetune", "distill", "base"].map(hashOf) as [
        Hex,
        Hex,
        Hex,
        Hex,
      ];
      assert.deepEqual(formatLineage(lineage), [
        `Merge + LoRA ${adapter}`,
        `└─ adapter of Chat x Distilled Merge ${merge}`,
        `   ├─ merge of Base 7B Chat ${finetune}`,
        `   │  └─ finetune of Base 7B ${base}`,
        `   └─ merge of Base 1B Distilled ${distill}`,
        `      └─ distill of Base 7B ${base}`,
      ]);
      const convert = hashOf("convert");
      const convertLineage = await getModelLineage(carol.connection, { deployments, modelHash: convert });
      assert.ok(convertLineage, "convertLineage");
      assert.deepEqual(formatLineage(convertLineage), [
        `Base 7B Chat Q4_K_M (MLX) ${convert}`,
        `└─ convert of Base 7B Chat Q4_K_M ${hashOf("quantize")}`,
        `   └─ quantize of Base 7B Chat ${finetune}`,
        `      └─ finetune of Base 7B ${base}`,
      ]);
      const shallow = await getModelLineage(carol.connection, {
        deployments,
        modelHash: adapter,
        maxDepth: 1,
      });
      assert.deepEqual(shallow, expectedLineage(adapter, 1));
      assert.deepEqual(shallow?.ancestors[0]?.ancestors, [], "maxDepth stops the walk");
      assert.deepEqual(await getModelLineage(carol.connection, { deployments, modelHash: base }), {
        ...expectedEntry(base),
        relationToChild: undefined,
        ancestors: [],
      });
      assert.equal(
        await getModelLineage(carol.connection, { deployments, modelHash: modelHashOf("nobody") }),
        undefined,
      );
    });

    it("deprecate: only the publisher, only once, and the entry stays readable", async () => {
      const base = hashOf("base");
      const before = await snapshot();
      await assertRefused(
        bob.connection,
        { address: registry, abi: modelRegistryAbi, functionName: "deprecate", args: [base, "mine now"] },
        "NotPublisher",
        [base, alice.address],
      );
      const unknown = modelHashOf("unknown");
      await assertRefused(
        alice.connection,
        { address: registry, abi: modelRegistryAbi, functionName: "deprecate", args: [unknown, "gone"] },
        "ModelNotRegistered",
        [unknown],
      );
      await assertRefused(
        alice.connection,
        {
          address: registry,
          abi: modelRegistryAbi,
          functionName: "deprecate",
          args: [base, "x".repeat(513)],
        },
        "FieldTooLong",
        ["reason", 513n, 512n],
      );
      assert.deepEqual(await snapshot(), before, "refused deprecations change nothing");

      const sent = await sendContractTransaction(alice.connection, {
        address: registry,
        abi: modelRegistryAbi,
        functionName: "deprecate",
        args: [base, "superseded by v2"],
        action: "deprecate base",
      });
      assert.deepEqual(eventsOf(modelRegistryAbi, registry, sent.receipt), [
        { eventName: "ModelDeprecated", args: { modelHash: base, reason: "superseded by v2" } },
      ]);
      const baseModel = registered.find((model) => model.modelHash === base);
      assert.ok(baseModel, "baseModel");
      baseModel.deprecated = true;
      assert.deepEqual(
        await getModelEntry(bob.connection, { deployments: chain.deployments, modelHash: base }),
        expectedEntry(base),
      );
      assert.equal(
        (await getModelEntry(bob.connection, { deployments: chain.deployments, modelHash: base }))
          ?.deprecated,
        true,
      );
      const afterDeprecation = await snapshot();
      await assertRefused(
        alice.connection,
        { address: registry, abi: modelRegistryAbi, functionName: "deprecate", args: [base, "again"] },
        "AlreadyDeprecated",
        [base],
      );
      assert.deepEqual(await snapshot(), afterDeprecation);
      const lineage = await getModelLineage(bob.connection, {
        deployments: chain.deployments,
        modelHash: hashOf("distill"),
      });
      assert.ok(lineage, "lineage");
      assert.deepEqual(formatLineage(lineage), [
        `Base 1B Distilled ${hashOf("distill")}`,
        `└─ distill of Base 7B ${base} (deprecated)`,
      ]);
    });

    it("refuses bad registrations and leaves the registry unchanged", async () => {
      // Seventeen registered models to be parents: the limit is on the count, not on existence.
      const many: Hex[] = [];
      for (let index = 0; index < 17; index++)
        many.push(
          await register(carol, { label: `parent-${index}`, name: `Parent ${index}`, license: "MIT" }),
        );
      const base = hashOf("base");
      const fresh = modelHashOf("fresh");
      const unknown = modelHashOf("unknown parent");
      const before = await snapshot();
      const refusals: [string, Call, string | undefined, (readonly unknown[])?][] = [
        [
          "a hash registered already (by someone else)",
          registerCall(base, "Stolen", "", "MIT"),
          "ModelAlreadyRegistered",
          [base],
        ],
        ["the zero hash", registerCall(zeroHash, "Zero", "", "MIT"), "ZeroModelHash", []],
        ["an empty name", registerCall(fresh, "", "", "MIT"), "EmptyName", []],
        ["an empty license", registerCall(fresh, "Fresh", "", ""), "EmptyLicense", []],
        [
          "an unregistered parent",
          registerCall(fresh, "Fresh", "", "MIT", [
            { modelHash: base, relation: 0 },
            { modelHash: unknown, relation: 1 },
          ]),
          "ModelNotRegistered",
          [unknown],
        ],
        [
          "itself as parent",
          registerCall(fresh, "Fresh", "", "MIT", [{ modelHash: fresh, relation: 0 }]),
          "ModelNotRegistered",
          [fresh],
        ],
        [
          "a parent listed twice",
          registerCall(fresh, "Fresh", "", "MIT", [
            { modelHash: base, relation: 0 },
            { modelHash: hashOf("distill"), relation: 3 },
            { modelHash: base, relation: 3 },
          ]),
          "DuplicateParent",
          [base],
        ],
        [
          "seventeen parents",
          registerCall(
            fresh,
            "Fresh",
            "",
            "MIT",
            many.map((modelHash) => ({ modelHash, relation: 3 })),
          ),
          "TooManyParents",
          [17n, 16n],
        ],
        [
          "a 129-byte name",
          registerCall(fresh, "n".repeat(129), "", "MIT"),
          "FieldTooLong",
          ["name", 129n, 128n],
        ],
        [
          "a name of 43 three-byte characters (129 bytes)",
          registerCall(fresh, "€".repeat(43), "", "MIT"),
          "FieldTooLong",
          ["name", 129n, 128n],
        ],
        [
          "a 513-byte metadata URI",
          registerCall(fresh, "Fresh", `ipfs://${"u".repeat(506)}`, "MIT"),
          "FieldTooLong",
          ["metadataUri", 513n, 512n],
        ],
        [
          "a 65-byte license",
          registerCall(fresh, "Fresh", "", "L".repeat(65)),
          "FieldTooLong",
          ["license", 65n, 64n],
        ],
        // A relation outside the enum fails ABI decoding: a revert without a custom error (viem reports
        // it as Error("execution reverted")).
        [
          "an unknown relation",
          registerCall(fresh, "Fresh", "", "MIT", [{ modelHash: base, relation: modelRelations.length }]),
          "Error",
        ],
      ];
      for (const [what, call, errorName, args] of refusals) {
        await assertRefused(bob.connection, call, errorName, args);
        assert.deepEqual(await snapshot(), before, `refusing ${what} changes nothing`);
      }
      // registerModel refuses a license that is not an SPDX expression before sending anything.
      const blockBefore = await chain.deployer.publicClient.getBlockNumber();
      await assert.rejects(
        registerModel(bob.connection, {
          deployments: chain.deployments,
          modelHash: fresh,
          name: "Fresh",
          license: "Apache 2.0; all rights reserved",
        }),
        (error: unknown) => error instanceof InvalidInputError && error.code === "invalid_license",
      );
      assert.equal(
        await chain.deployer.publicClient.getBlockNumber(),
        blockBefore,
        "no transaction was sent",
      );
      assert.deepEqual(await snapshot(), before);

      // The limits themselves are accepted: 16 parents, 128-byte name, 512-byte URI, 64-byte license.
      const atLimits = await register(bob, {
        label: "at-limits",
        name: `${"€".repeat(42)}nn`,
        license: "L".repeat(64),
        metadataUri: `ipfs://${"u".repeat(505)}`,
        parents: many.slice(0, 16).map((modelHash) => ({ modelHash, relation: "merge" })),
      });
      assert.deepEqual(
        await getModelEntry(bob.connection, { deployments: chain.deployments, modelHash: atLimits }),
        expectedEntry(atLimits),
      );
      assert.equal((await snapshot()).count, before.count + 1n);
    });

    it("parseModelParent reads <hash>:<relation> and refuses anything else", () => {
      const hex = "ab".repeat(32);
      for (const relation of modelRelations) {
        assert.deepEqual(parseModelParent(`0x${hex}:${relation}`), { modelHash: `0x${hex}`, relation });
      }
      assert.deepEqual(parseModelParent(`${hex}:quantize`), { modelHash: `0x${hex}`, relation: "quantize" });
      assert.deepEqual(parseModelParent(`0X${hex.toUpperCase()}:merge`), {
        modelHash: `0x${hex}`,
        relation: "merge",
      });
      const bad = [
        "",
        `0x${hex}`,
        `0x${hex}:`,
        `0x${hex}:Quantize`,
        `0x${hex}:fork`,
        `0x${hex}:quantize:extra`,
        `0x${"ab".repeat(31)}:quantize`,
        `0x${"ab".repeat(33)}:quantize`,
        `0x${"zz".repeat(32)}:quantize`,
        `quantize:0x${hex}`,
        `0x0x${hex}:quantize`,
      ];
      for (const text of bad) {
        assert.throws(
          () => parseModelParent(text),
          (error: unknown) => error instanceof InvalidInputError && error.code === "invalid_parent",
          `"${text}" must be refused`,
        );
      }
    });

    it("isSpdxExpression accepts license expressions and refuses other text", () => {
      for (const text of [
        "Apache-2.0",
        "MIT",
        "NOASSERTION",
        "MIT OR Apache-2.0",
        "(MIT AND BSD-3-Clause) OR GPL-2.0-or-later",
        "GPL-2.0+",
        "LicenseRef-custom.1",
        "A".repeat(64),
      ])
        assert.equal(isSpdxExpression(text), true, `"${text}" is an SPDX expression`);
      for (const text of [
        "",
        " ",
        "()",
        "-+.",
        "A".repeat(65),
        "MIT/Apache-2.0",
        "MIT;rm -rf",
        "Apache-2.0\n",
        "Lizenz-ä",
        "MIT, Apache-2.0",
      ])
        assert.equal(isSpdxExpression(text), false, `"${text}" is not an SPDX expression`);
    });
  });

  describe("ProviderRegistry", () => {
    let registry: Address;
    let token: Address;
    let minimum: bigint;
    let unbondingSeconds: bigint;
    let models: Hex[];
    let p1: TestAccount;
    let p2: TestAccount;
    let p3: TestAccount;
    let p4: TestAccount;
    let outsider: TestAccount;

    /** The reference: what each registered provider should hold. */
    const local = new Map<
      Address,
      {
        peerId: string;
        stake: bigint;
        unbonding: bigint;
        releaseAt: bigint;
        registeredAt: bigint;
        offers: ProviderOffer[];
      }
    >();

    const offer = (modelHash: Hex, input: bigint, output: bigint): ProviderOffer => ({
      modelHash,
      inputPricePerMillion: input,
      outputPricePerMillion: output,
    });

    function expectedRecord(address: Address): ProviderRecord | undefined {
      const provider = local.get(address);
      if (!provider) return undefined;
      return {
        address,
        peerId: provider.peerId,
        stake: provider.stake,
        unbonding: provider.unbonding,
        unbondingReleaseAt:
          provider.releaseAt === 0n ? undefined : new Date(Number(provider.releaseAt) * 1000),
        registeredAt: new Date(Number(provider.registeredAt) * 1000),
        offers: provider.offers.map((entry) => ({ ...entry })),
        active: provider.stake >= minimum,
      };
    }

    const read = <T>(functionName: string, args: readonly unknown[] = []) =>
      chain.deployer.publicClient.readContract({
        address: registry,
        abi: providerRegistryAbi,
        functionName,
        args,
      } as Loose) as Promise<T>;

    const sorted = (addresses: readonly Address[]) => [...addresses].sort();

    /** The registry's whole observable state for the providers this test knows about. */
    async function snapshot() {
      const everyone = [p1, p2, p3, p4, outsider];
      return {
        addresses: sorted(await read<Address[]>("providerAddresses")),
        active: sorted(await read<Address[]>("activeProviders")),
        count: await read<bigint>("providerCount"),
        registryBalance: await getTokenBalance(chain.deployer, { token, owner: registry }),
        records: await Promise.all(
          everyone.map((account) =>
            getProviderRecord(chain.deployer, { deployments: chain.deployments, provider: account.address }),
          ),
        ),
        balances: await Promise.all(
          everyone.map((account) => getTokenBalance(chain.deployer, { token, owner: account.address })),
        ),
      };
    }

    /** Compares every provider's record, the address lists and the registry's balance with the reference. */
    async function assertMatchesReference() {
      for (const account of [p1, p2, p3, p4, outsider]) {
        assert.deepEqual(
          await getProviderRecord(chain.deployer, {
            deployments: chain.deployments,
            provider: account.address,
          }),
          expectedRecord(account.address),
        );
        assert.equal(await read("isRegistered", [account.address]), local.has(account.address));
      }
      const all = [...local.keys()];
      assert.deepEqual(sorted(await read<Address[]>("providerAddresses")), sorted(all));
      assert.equal(await read("providerCount"), BigInt(all.length));
      assert.deepEqual(
        sorted(await read<Address[]>("activeProviders")),
        sorted(all.filter((address) => (local.get(address)?.stake ?? 0n) >= minimum)),
      );
      let held = 0n;
      for (const provider of local.values()) held += provider.stake + provider.unbonding;
      assert.equal(await getTokenBalance(chain.deployer, { token, owner: registry }), held);
    }

    const call = (functionName: string, args: readonly unknown[]): Call => ({
      address: registry,
      abi: providerRegistryAbi,
      functionName,
      args,
    });

    async function approve(account: TestAccount, amount: bigint) {
      await sendContractTransaction(account.connection, {
        address: token,
        abi: [
          {
            type: "function",
            name: "approve",
            stateMutability: "nonpayable",
            inputs: [
              { name: "spender", type: "address" },
              { name: "value", type: "uint256" },
            ],
            outputs: [{ type: "bool" }],
          },
        ] as const,
        functionName: "approve",
        args: [registry, amount],
        action: "approve",
      });
    }

    async function registerTracked(
      account: TestAccount,
      peerId: string,
      offers: ProviderOffer[],
      stake: bigint,
    ) {
      const balanceBefore = await getTokenBalance(chain.deployer, { token, owner: account.address });
      const sent = await registerProvider(account.connection, {
        deployments: chain.deployments,
        peerId,
        offers,
        stake,
      });
      assert.deepEqual(eventsOf(providerRegistryAbi, registry, sent.receipt), [
        { eventName: "ProviderRegistered", args: { provider: account.address, peerId, stake } },
        {
          eventName: "OffersUpdated",
          args: { provider: account.address, offers: offers.map((entry) => ({ ...entry })) },
        },
      ]);
      assert.equal(
        await getTokenBalance(chain.deployer, { token, owner: account.address }),
        balanceBefore - stake,
        "the stake is pulled from the provider",
      );
      local.set(account.address, {
        peerId,
        stake,
        unbonding: 0n,
        releaseAt: 0n,
        registeredAt: await blockTime(chain, sent.receipt.blockNumber),
        offers,
      });
    }

    before(async () => {
      registry = chain.deployments.contracts.providerRegistry;
      token = chain.deployments.contracts.token;
      minimum = BigInt(chain.deployments.parameters.minimumProviderStake);
      unbondingSeconds = BigInt(chain.deployments.parameters.providerUnbondingSeconds);
      // One at a time: the fixture funds each account from the deployer's key.
      p1 = await chain.account("providers-p1");
      p2 = await chain.account("providers-p2");
      p3 = await chain.account("providers-p3");
      p4 = await chain.account("providers-p4");
      outsider = await chain.account("providers-outsider");
      models = [];
      for (const label of ["served-a", "served-b", "served-c"]) {
        const modelHash = modelHashOf(label);
        await registerModel(chain.deployer, {
          deployments: chain.deployments,
          modelHash,
          name: label,
          license: "MIT",
        });
        models.push(modelHash);
      }
    });

    it("is deployed with the configured minimum, unbonding period and consensus contract", async () => {
      assert.equal(await read("minimumStake"), minimum);
      assert.equal(await read("unbondingPeriod"), unbondingSeconds);
      assert.equal(await read("consensus"), chain.deployments.contracts.epochConsensus);
      assert.equal(await read("token"), token);
      assert.equal(await read("models"), chain.deployments.contracts.modelRegistry);
      await assertMatchesReference();
    });

    it("registers providers with at least the minimum stake, pulling the tokens", async () => {
      const models0 = models[0] as Hex;
      const models1 = models[1] as Hex;
      await registerTracked(p1, "12D3KooWp1", [offer(models0, 100n, 300n)], minimum);
      await registerTracked(
        p2,
        "12D3KooWp2",
        [offer(models0, 50n, 150n), offer(models1, 10n, 20n)],
        minimum * 3n + 1n,
      );
      await registerTracked(p3, "12D3KooWp3", [offer(models1, 1n, 2n)], minimum * 2n);
      await assertMatchesReference();
    });

    it("refuses a stake below the minimum, bad offers, bad peer ids and a second registration, changing nothing", async () => {
      const [a, b] = models as [Hex, Hex];
      const unregistered = modelHashOf("not in the model registry");
      await approve(p4, minimum * 10n);
      const before = await snapshot();
      const refusals: [string, TestAccount, Call, string, readonly unknown[]][] = [
        [
          "one unit below the minimum",
          p4,
          call("register", ["12D3KooWp4", [offer(a, 1n, 1n)], minimum - 1n]),
          "StakeBelowMinimum",
          [minimum - 1n, minimum],
        ],
        [
          "a zero stake",
          p4,
          call("register", ["12D3KooWp4", [offer(a, 1n, 1n)], 0n]),
          "StakeBelowMinimum",
          [0n, minimum],
        ],
        [
          "an unregistered model",
          p4,
          call("register", ["12D3KooWp4", [offer(a, 1n, 1n), offer(unregistered, 1n, 1n)], minimum]),
          "UnregisteredModel",
          [unregistered],
        ],
        [
          "a model offered twice",
          p4,
          call("register", ["12D3KooWp4", [offer(a, 1n, 1n), offer(b, 1n, 1n), offer(a, 2n, 2n)], minimum]),
          "DuplicateOffer",
          [a],
        ],
        ["no offers", p4, call("register", ["12D3KooWp4", [], minimum]), "InvalidOfferCount", [0n, 32n]],
        [
          "33 offers",
          p4,
          call("register", ["12D3KooWp4", Array.from({ length: 33 }, () => offer(a, 1n, 1n)), minimum]),
          "InvalidOfferCount",
          [33n, 32n],
        ],
        ["an empty peer id", p4, call("register", ["", [offer(a, 1n, 1n)], minimum]), "InvalidPeerId", []],
        [
          "a 129-byte peer id",
          p4,
          call("register", ["p".repeat(129), [offer(a, 1n, 1n)], minimum]),
          "InvalidPeerId",
          [],
        ],
        [
          "a second registration",
          p1,
          call("register", ["12D3KooWp1-again", [offer(a, 1n, 1n)], minimum]),
          "AlreadyRegistered",
          [p1.address],
        ],
      ];
      for (const [what, account, refused, errorName, args] of refusals) {
        await assertRefused(account.connection, refused, errorName, args);
        assert.deepEqual(await snapshot(), before, `refusing ${what} changes nothing`);
      }
      await assertMatchesReference();
    });

    it("offers must reference registered models; updateOffers and updatePeerId replace them", async () => {
      const [a, b, c] = models as [Hex, Hex, Hex];
      const unregistered = modelHashOf("still not registered");
      const provider = local.get(p1.address);
      assert.ok(provider, "provider");
      const offers = [offer(b, 7n, 9n), offer(c, 1n, 2n ** 128n - 1n)];
      const sent = await sendContractTransaction(p1.connection, {
        address: registry,
        abi: providerRegistryAbi,
        functionName: "updateOffers",
        args: [offers],
        action: "update offers",
      });
      assert.deepEqual(eventsOf(providerRegistryAbi, registry, sent.receipt), [
        { eventName: "OffersUpdated", args: { provider: p1.address, offers } },
      ]);
      provider.offers = offers;
      await assertMatchesReference();

      const peer = await sendContractTransaction(p1.connection, {
        address: registry,
        abi: providerRegistryAbi,
        functionName: "updatePeerId",
        args: ["12D3KooWp1-moved"],
        action: "update peer id",
      });
      assert.deepEqual(eventsOf(providerRegistryAbi, registry, peer.receipt), [
        { eventName: "PeerIdUpdated", args: { provider: p1.address, peerId: "12D3KooWp1-moved" } },
      ]);
      provider.peerId = "12D3KooWp1-moved";
      await assertMatchesReference();

      const before = await snapshot();
      await assertRefused(
        p1.connection,
        call("updateOffers", [[offer(a, 1n, 1n), offer(unregistered, 1n, 1n)]]),
        "UnregisteredModel",
        [unregistered],
      );
      await assertRefused(p1.connection, call("updateOffers", [[]]), "InvalidOfferCount", [0n, 32n]);
      await assertRefused(p1.connection, call("updatePeerId", [""]), "InvalidPeerId", []);
      await assertRefused(outsider.connection, call("updateOffers", [[offer(a, 1n, 1n)]]), "NotRegistered", [
        outsider.address,
      ]);
      await assertRefused(outsider.connection, call("updatePeerId", ["12D3KooWnobody"]), "NotRegistered", [
        outsider.address,
      ]);
      assert.deepEqual(await snapshot(), before, "refused updates change nothing");
    });

    it("addStake adds to the bonded stake and pulls the tokens", async () => {
      const provider = local.get(p1.address);
      assert.ok(provider, "provider");
      const amount = 12_345n;
      const balanceBefore = await getTokenBalance(chain.deployer, { token, owner: p1.address });
      const sent = await addProviderStake(p1.connection, { deployments: chain.deployments, amount });
      provider.stake += amount;
      assert.deepEqual(eventsOf(providerRegistryAbi, registry, sent.receipt), [
        { eventName: "StakeAdded", args: { provider: p1.address, amount, stake: provider.stake } },
      ]);
      assert.equal(
        await getTokenBalance(chain.deployer, { token, owner: p1.address }),
        balanceBefore - amount,
      );
      await assertMatchesReference();
      await approve(outsider, 10n);
      const before = await snapshot();
      await assertRefused(p1.connection, call("addStake", [0n]), "ZeroAmount", []);
      await assertRefused(outsider.connection, call("addStake", [10n]), "NotRegistered", [outsider.address]);
      assert.deepEqual(await snapshot(), before);
    });

    it("requestUnbond and withdraw: nothing leaves before the unbonding period ends, all of it after", async () => {
      const provider = local.get(p2.address);
      assert.ok(provider, "provider");
      const deployments = chain.deployments;
      const before = await snapshot();
      await assertRefused(p2.connection, call("withdraw", []), "NothingUnbonding", []);
      await assertRefused(p2.connection, call("requestUnbond", [0n]), "ZeroAmount", []);
      await assertRefused(p2.connection, call("requestUnbond", [provider.stake + 1n]), "InsufficientStake", [
        provider.stake,
        provider.stake + 1n,
      ]);
      await assertRefused(outsider.connection, call("requestUnbond", [1n]), "NotRegistered", [
        outsider.address,
      ]);
      assert.deepEqual(await snapshot(), before);

      // Unbond just enough to drop below the minimum: still registered, no longer active.
      const first = provider.stake - minimum + 1n;
      const sent = await requestProviderUnbond(p2.connection, { deployments, amount: first });
      const firstAt = await blockTime(chain, sent.receipt.blockNumber);
      provider.stake -= first;
      provider.unbonding += first;
      provider.releaseAt = firstAt + unbondingSeconds;
      assert.deepEqual(eventsOf(providerRegistryAbi, registry, sent.receipt), [
        {
          eventName: "UnbondingRequested",
          args: { provider: p2.address, amount: first, releaseAt: provider.releaseAt },
        },
      ]);
      await assertMatchesReference();
      assert.equal(
        (await getProviderRecord(chain.deployer, { deployments, provider: p2.address }))?.active,
        false,
      );

      // A second request restarts the period for the whole unbonding balance.
      await chain.increaseTime(Number(unbondingSeconds) / 2);
      const second = 1n;
      const again = await requestProviderUnbond(p2.connection, { deployments, amount: second });
      const secondAt = await blockTime(chain, again.receipt.blockNumber);
      provider.stake -= second;
      provider.unbonding += second;
      provider.releaseAt = secondAt + unbondingSeconds;
      assert.ok(
        provider.releaseAt > firstAt + unbondingSeconds,
        "provider.releaseAt > firstAt + unbondingSeconds",
      );
      await assertMatchesReference();

      // The boundary, simulated at exact block times: refused one second before releaseAt, allowed at it.
      const withdraw = call("withdraw", []);
      assert.equal(await refusalAt(p2.connection, provider.releaseAt - 1n, withdraw), "UnbondingNotFinished");
      assert.equal(await refusalAt(p2.connection, provider.releaseAt, withdraw), undefined);

      // Past the first request's period but not the second's: still refused.
      await chain.increaseTime(Number(firstAt + unbondingSeconds - (await chain.now())) + 2);
      assert.ok(
        (await chain.now()) < provider.releaseAt - 10n,
        "(await chain.now()) < provider.releaseAt - 10n",
      );
      const locked = await snapshot();
      await assertRefused(p2.connection, withdraw, "UnbondingNotFinished", [provider.releaseAt]);
      assert.deepEqual(await snapshot(), locked);

      await chain.increaseTime(Number(provider.releaseAt - (await chain.now())) + 1);
      const balanceBefore = await getTokenBalance(chain.deployer, { token, owner: p2.address });
      const withdrawn = await withdrawProviderStake(p2.connection, { deployments });
      assert.deepEqual(eventsOf(providerRegistryAbi, registry, withdrawn.receipt), [
        { eventName: "StakeWithdrawn", args: { provider: p2.address, amount: first + second } },
      ]);
      assert.equal(
        await getTokenBalance(chain.deployer, { token, owner: p2.address }),
        balanceBefore + first + second,
        "the unbonded tokens come back",
      );
      provider.unbonding = 0n;
      provider.releaseAt = 0n;
      await assertMatchesReference();
      assert.ok(local.has(p2.address), "a provider with bonded stake left stays registered");
      await assertRefused(p2.connection, withdraw, "NothingUnbonding", []);
    });

    it("a provider that withdrew everything is removed from providerAddresses and may register again", async () => {
      const deployments = chain.deployments;
      await registerTracked(p4, "12D3KooWp4", [offer(models[2] as Hex, 5n, 5n)], minimum);
      // Registration order p1, p2, p3, p4: removing p3 moves p4 into its slot, so p4 leaving next
      // exercises the moved index.
      for (const account of [p3, p4]) {
        const provider = local.get(account.address);
        assert.ok(provider, "provider");
        const amount = provider.stake;
        const sent = await requestProviderUnbond(account.connection, { deployments, amount });
        provider.unbonding = amount;
        provider.stake = 0n;
        provider.releaseAt = (await blockTime(chain, sent.receipt.blockNumber)) + unbondingSeconds;
        await assertMatchesReference();
        assert.ok(
          (await read<Address[]>("providerAddresses")).includes(account.address),
          "still registered while unbonding",
        );
        assert.ok(!(await read<Address[]>("activeProviders")).includes(account.address), "but not active");
        await chain.increaseTime(Number(unbondingSeconds) + 1);
        const balanceBefore = await getTokenBalance(chain.deployer, { token, owner: account.address });
        const withdrawn = await withdrawProviderStake(account.connection, { deployments });
        assert.deepEqual(eventsOf(providerRegistryAbi, registry, withdrawn.receipt), [
          { eventName: "ProviderExited", args: { provider: account.address } },
          { eventName: "StakeWithdrawn", args: { provider: account.address, amount } },
        ]);
        assert.equal(
          await getTokenBalance(chain.deployer, { token, owner: account.address }),
          balanceBefore + amount,
        );
        local.delete(account.address);
        await assertMatchesReference();
        await assertRefused(account.connection, call("withdraw", []), "NotRegistered", [account.address]);
      }
      await registerTracked(p3, "12D3KooWp3-back", [offer(models[0] as Hex, 3n, 4n)], minimum);
      await assertMatchesReference();
    });

    it("activeProviders lists exactly the registered providers with at least the minimum bonded stake", async () => {
      const deployments = chain.deployments;
      // p1 drops to exactly the minimum (still active), p3 one unit below it (inactive).
      const p1State = local.get(p1.address);
      const p3State = local.get(p3.address);
      assert.ok(p1State && p3State, "p1State && p3State");
      const p1Amount = p1State.stake - minimum;
      const a = await requestProviderUnbond(p1.connection, { deployments, amount: p1Amount });
      p1State.stake -= p1Amount;
      p1State.unbonding += p1Amount;
      p1State.releaseAt = (await blockTime(chain, a.receipt.blockNumber)) + unbondingSeconds;
      const b = await requestProviderUnbond(p3.connection, { deployments, amount: 1n });
      p3State.stake -= 1n;
      p3State.unbonding += 1n;
      p3State.releaseAt = (await blockTime(chain, b.receipt.blockNumber)) + unbondingSeconds;
      await assertMatchesReference();
      assert.deepEqual(
        await read<Address[]>("activeProviders"),
        [p1.address],
        "p2 and p3 are below the minimum",
      );
      // Topping up to exactly the minimum makes a provider active again.
      const p2State = local.get(p2.address);
      assert.ok(p2State, "p2State");
      const topUp = minimum - p2State.stake;
      assert.ok(topUp > 0n, "topUp > 0n");
      await addProviderStake(p2.connection, { deployments, amount: topUp });
      p2State.stake += topUp;
      await assertMatchesReference();
      assert.deepEqual(sorted(await read<Address[]>("activeProviders")), sorted([p1.address, p2.address]));
    });

    it("getProviders reads many registrations in one call, in order; listStakedProviders lists the active ones", async () => {
      type Record = { peerId: string; stake: bigint; offers: readonly ProviderOffer[] };
      const addresses = [p2.address, p1.address, p3.address];
      const records = await read<Record[]>("getProviders", [addresses]);
      assert.equal(records.length, 3);
      for (const [index, address] of addresses.entries()) {
        const single = await read<Record>("getProvider", [address]);
        assert.equal(records[index]?.peerId, single.peerId, `record ${index} is ${address}'s`);
        assert.equal(records[index]?.stake, single.stake);
        assert.deepEqual(records[index]?.offers, single.offers);
      }
      assert.deepEqual(await read<Record[]>("getProviders", [[]]), []);
      await assert.rejects(read("getProviders", [[p1.address, outsider.address]]), /NotRegistered/);
      const listed = await listStakedProviders(chain.deployer, { deployments: chain.deployments });
      assert.deepEqual(
        sorted(listed.map((entry) => entry.address)),
        sorted(await read<Address[]>("activeProviders")),
      );
      for (const entry of listed) {
        const expected = expectedRecord(entry.address);
        assert.equal(entry.peerId, expected?.peerId);
        assert.deepEqual(entry.offers, expected?.offers);
      }
    });

    it("only the consensus contract slashes; the owner sets it once", async () => {
      const before = await snapshot();
      for (const account of [outsider, p1]) {
        await assertRefused(
          account.connection,
          call("slash", [p1.address, 1n, account.address]),
          "NotConsensus",
          [account.address],
        );
      }
      const deployer = chain.deployer.account?.address;
      assert.ok(deployer, "deployer");
      await assertRefused(chain.deployer, call("slash", [p2.address, minimum, deployer]), "NotConsensus", [
        deployer,
      ]);
      await assertRefused(chain.deployer, call("setConsensus", [outsider.address]), "ConsensusAlreadySet", [
        chain.deployments.contracts.epochConsensus,
      ]);
      await assertRefused(outsider.connection, call("setConsensus", [outsider.address]), "NotOwner", [
        outsider.address,
      ]);
      assert.deepEqual(await snapshot(), before, "nothing was slashed");
      assert.equal(await read("consensus"), chain.deployments.contracts.epochConsensus);
      await assertMatchesReference();
    });
  });
});
