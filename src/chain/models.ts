/** ModelRegistry actions: register a model with its lineage, read an entry and its lineage tree. */
import type { Address, Hex } from "viem";
import { InvalidInputError } from "../errors/index.ts";
import type { ChainConnection } from "./client.ts";
import type { Deployments } from "./deployments.ts";
import { toChainError } from "./errors.ts";
import { modelRegistryAbi } from "./generated/contracts.ts";
import { sendContractTransaction, type TransactionReporter } from "./transactions.ts";

/** How a model derives from a parent (ModelRegistry.Relation, in order). */
export const modelRelations = ["finetune", "quantize", "distill", "merge", "adapter", "convert"] as const;
/** One of {@link modelRelations}. */
export type ModelRelation = (typeof modelRelations)[number];

/** A parent of a model. */
export type ModelParent = { modelHash: Hex; relation: ModelRelation };

/** A registry entry. */
export type ModelEntry = {
  modelHash: Hex;
  name: string;
  metadataUri: string;
  license: string;
  publisher: Address;
  registeredAt: Date;
  deprecated: boolean;
  parents: ModelParent[];
  children: Hex[];
};

/** A model with its ancestors, as a tree (a parent shared by two paths appears under both). */
export type LineageNode = ModelEntry & { relationToChild?: ModelRelation; ancestors: LineageNode[] };

/** Parses "<hash>:<relation>" (the CLI's --parent). */
export function parseModelParent(text: string): ModelParent {
  const [hash, relation, ...rest] = text.split(":");
  const hex = (hash ?? "").replace(/^0x/i, "").toLowerCase();
  if (rest.length > 0 || !/^[0-9a-f]{64}$/.test(hex) || !modelRelations.includes(relation as ModelRelation))
    throw new InvalidInputError(`"${text}" is not <sha256 hash>:<relation>`, {
      code: "invalid_parent",
      hint: `relation is one of ${modelRelations.join(", ")}; e.g. --parent 3f2a…c9:quantize`,
    });
  return { modelHash: `0x${hex}`, relation: relation as ModelRelation };
}

/** An SPDX license expression: identifiers, WITH/AND/OR, parentheses (e.g. "Apache-2.0", "MIT OR Apache-2.0"). */
export function isSpdxExpression(text: string): boolean {
  return /^[A-Za-z0-9.+\-() ]{1,64}$/.test(text) && /[A-Za-z0-9]/.test(text);
}

/** Parameters of {@link registerModel}. */
export type RegisterModelParameters = {
  deployments: Deployments;
  modelHash: Hex;
  name: string;
  license: string;
  metadataUri?: string;
  parents?: ModelParent[];
  onTransaction?: TransactionReporter;
};

/** Registers a model by its weight hash; the sender becomes its publisher. */
export async function registerModel(connection: ChainConnection, parameters: RegisterModelParameters) {
  if (!isSpdxExpression(parameters.license))
    throw new InvalidInputError(`"${parameters.license}" is not an SPDX license expression`, {
      code: "invalid_license",
      hint: 'use an SPDX identifier such as "Apache-2.0", "MIT" or "NOASSERTION"',
    });
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.modelRegistry,
    abi: modelRegistryAbi,
    functionName: "register",
    args: [
      parameters.modelHash,
      parameters.name,
      parameters.metadataUri ?? "",
      parameters.license,
      (parameters.parents ?? []).map((parent) => ({
        modelHash: parent.modelHash,
        relation: modelRelations.indexOf(parent.relation),
      })),
    ],
    action: `register model ${parameters.name} (${parameters.modelHash})`,
    onTransaction: parameters.onTransaction,
  });
}

/** Reads a model's entry, or undefined when the hash is not registered. */
export async function getModelEntry(
  connection: ChainConnection,
  parameters: { deployments: Deployments; modelHash: Hex },
): Promise<ModelEntry | undefined> {
  const address = parameters.deployments.contracts.modelRegistry;
  const read = connection.publicClient;
  try {
    const registered = await read.readContract({
      address,
      abi: modelRegistryAbi,
      functionName: "isRegistered",
      args: [parameters.modelHash],
    });
    if (!registered) return undefined;
    const [model, parents, children] = await Promise.all([
      read.readContract({
        address,
        abi: modelRegistryAbi,
        functionName: "getModel",
        args: [parameters.modelHash],
      }),
      read.readContract({
        address,
        abi: modelRegistryAbi,
        functionName: "getParents",
        args: [parameters.modelHash],
      }),
      read.readContract({
        address,
        abi: modelRegistryAbi,
        functionName: "getChildren",
        args: [parameters.modelHash],
      }),
    ]);
    return {
      modelHash: parameters.modelHash,
      name: model.name,
      metadataUri: model.metadataUri,
      license: model.license,
      publisher: model.publisher,
      registeredAt: new Date(Number(model.registeredAt) * 1000),
      deprecated: model.deprecated,
      parents: parents.map((parent) => ({
        modelHash: parent.modelHash,
        relation: modelRelations[parent.relation] ?? "convert",
      })),
      children: [...children],
    };
  } catch (error) {
    throw toChainError(error, `reading model ${parameters.modelHash}`);
  }
}

/** Reads a model and its ancestors, up to `maxDepth` generations (default 16). */
export async function getModelLineage(
  connection: ChainConnection,
  parameters: { deployments: Deployments; modelHash: Hex; maxDepth?: number },
): Promise<LineageNode | undefined> {
  const maxDepth = parameters.maxDepth ?? 16;
  const cache = new Map<Hex, Promise<ModelEntry | undefined>>();
  const entry = (modelHash: Hex) => {
    let pending = cache.get(modelHash);
    if (!pending) {
      pending = getModelEntry(connection, { deployments: parameters.deployments, modelHash });
      cache.set(modelHash, pending);
    }
    return pending;
  };
  const build = async (
    modelHash: Hex,
    depth: number,
    relation?: ModelRelation,
  ): Promise<LineageNode | undefined> => {
    const model = await entry(modelHash);
    if (!model) return undefined;
    const ancestors =
      depth >= maxDepth
        ? []
        : (
            await Promise.all(
              model.parents.map((parent) => build(parent.modelHash, depth + 1, parent.relation)),
            )
          ).filter((node): node is LineageNode => node !== undefined);
    return { ...model, relationToChild: relation, ancestors };
  };
  return build(parameters.modelHash, 0);
}

/** Renders a lineage tree as indented lines ("└─ quantize of base 0x…"). */
export function formatLineage(node: LineageNode): string[] {
  const lines = [`${node.name} ${node.modelHash}${node.deprecated ? " (deprecated)" : ""}`];
  const walk = (children: LineageNode[], indent: string) => {
    children.forEach((child, index) => {
      const last = index === children.length - 1;
      lines.push(
        `${indent}${last ? "└─" : "├─"} ${child.relationToChild} of ${child.name} ${child.modelHash}${child.deprecated ? " (deprecated)" : ""}`,
      );
      walk(child.ancestors, `${indent}${last ? "   " : "│  "}`);
    });
  };
  walk(node.ancestors, "");
  return lines;
}
