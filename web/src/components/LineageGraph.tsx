/**
 * The model lineage graph: models as boxes laid out in layers by depth (roots on top), an arrow from each parent
 * to its child labelled with the relation ("quantize", "finetune"). A list of the same relations follows for
 * screen readers.
 */
import type { RegistryModel } from "../../../src/explorer/types.ts";
import { shortHex } from "../format.ts";

type GraphNode = {
  hash: string;
  name: string;
  registered: boolean;
  deprecated: boolean;
  /** Not in the list at all: only named as a parent or child. */
  unknown: boolean;
  depth: number;
  x: number;
  y: number;
};
type GraphEdge = { from: string; to: string; relation: string };

const nodeWidth = 176;
const nodeHeight = 58;
const gapX = 28;
const gapY = 74;
const pad = 16;

function normalizeHash(hash: string): string {
  const lower = hash.toLowerCase();
  return lower.startsWith("0x") ? lower : `0x${lower}`;
}

function truncate(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

/** Lays the models and their relations out in layers (pure, so it can be tested on its own). */
export function layoutLineage(models: readonly RegistryModel[]): {
  nodes: GraphNode[];
  edges: GraphEdge[];
  width: number;
  height: number;
} {
  const nodes = new Map<string, GraphNode>();
  const add = (hash: string, model?: RegistryModel) => {
    const key = normalizeHash(hash);
    const existing = nodes.get(key);
    if (existing && (!model || !existing.unknown)) return key;
    nodes.set(key, {
      hash,
      name: model?.name ?? "unknown model",
      registered: model?.registered ?? false,
      deprecated: model?.deprecated ?? false,
      unknown: !model,
      depth: 0,
      x: 0,
      y: 0,
    });
    return key;
  };
  for (const model of models) add(model.model_hash, model);
  const edges: GraphEdge[] = [];
  const seen = new Set<string>();
  for (const model of models) {
    const to = normalizeHash(model.model_hash);
    for (const parent of model.parents) {
      const from = add(parent.model_hash);
      if (seen.has(`${from}>${to}`)) continue;
      seen.add(`${from}>${to}`);
      edges.push({ from, to, relation: parent.relation });
    }
  }
  for (const model of models) {
    const from = normalizeHash(model.model_hash);
    for (const child of model.children) {
      const to = add(child);
      if (seen.has(`${from}>${to}`)) continue;
      seen.add(`${from}>${to}`);
      edges.push({ from, to, relation: "derived" });
    }
  }

  const parentsOf = new Map<string, string[]>();
  for (const edge of edges) parentsOf.set(edge.to, [...(parentsOf.get(edge.to) ?? []), edge.from]);
  const depths = new Map<string, number>();
  const depthOf = (key: string, visiting: Set<string>): number => {
    const known = depths.get(key);
    if (known !== undefined) return known;
    if (visiting.has(key)) return 0;
    visiting.add(key);
    const parents = parentsOf.get(key) ?? [];
    const depth = parents.length ? 1 + Math.max(...parents.map((parent) => depthOf(parent, visiting))) : 0;
    visiting.delete(key);
    depths.set(key, depth);
    return depth;
  };
  const layers: GraphNode[][] = [];
  for (const [key, node] of nodes) {
    node.depth = depthOf(key, new Set());
    const layer = layers[node.depth];
    if (layer) layer.push(node);
    else layers[node.depth] = [node];
  }

  const columns = Math.max(1, ...layers.map((layer) => layer?.length ?? 0));
  const width = pad * 2 + columns * nodeWidth + (columns - 1) * gapX;
  const xOf = new Map<string, number>();
  layers.forEach((layer, depth) => {
    if (!layer) return;
    // Order each layer by where its parents are (fewer crossings); roots by name.
    const weight = (node: GraphNode) => {
      const parents = parentsOf.get(normalizeHash(node.hash)) ?? [];
      const xs = parents.flatMap((parent) => {
        const value = xOf.get(parent);
        return value === undefined ? [] : [value];
      });
      return xs.length ? xs.reduce((sum, value) => sum + value, 0) / xs.length : 0;
    };
    layer.sort((a, b) => weight(a) - weight(b) || a.name.localeCompare(b.name));
    const rowWidth = layer.length * nodeWidth + (layer.length - 1) * gapX;
    const start = (width - rowWidth) / 2;
    layer.forEach((node, index) => {
      node.x = start + index * (nodeWidth + gapX);
      node.y = pad + depth * (nodeHeight + gapY);
      xOf.set(normalizeHash(node.hash), node.x);
    });
  });
  const height = pad * 2 + layers.length * nodeHeight + Math.max(0, layers.length - 1) * gapY;
  return { nodes: [...nodes.values()], edges, width, height };
}

/** The lineage of the listed models as an SVG graph. */
export function LineageGraph(props: { models: readonly RegistryModel[] }) {
  const { nodes, edges, width, height } = layoutLineage(props.models);
  const byKey = new Map(nodes.map((node) => [normalizeHash(node.hash), node]));
  const nameOf = (key: string) => {
    const node = byKey.get(key);
    return node ? `${node.name} (${shortHex(node.hash)})` : shortHex(key);
  };
  return (
    <div class="graph">
      <div class="graph-scroll">
        <svg
          width={width}
          height={height}
          viewBox={`0 0 ${width} ${height}`}
          role="img"
          aria-labelledby="lineage-title"
        >
          <title id="lineage-title">
            Model lineage: {nodes.length} models, {edges.length} derivations (listed below)
          </title>
          <defs>
            <marker
              id="lineage-arrow"
              viewBox="0 0 10 10"
              refX="10"
              refY="5"
              markerWidth="7"
              markerHeight="7"
              orient="auto"
            >
              <path d="M0 0L10 5L0 10z" class="graph-arrow" />
            </marker>
          </defs>
          {edges.map((edge) => {
            const from = byKey.get(edge.from);
            const to = byKey.get(edge.to);
            if (!from || !to) return null;
            const x1 = from.x + nodeWidth / 2;
            const y1 = from.y + nodeHeight;
            const x2 = to.x + nodeWidth / 2;
            const y2 = to.y;
            const middle = (y1 + y2) / 2;
            return (
              <g key={`${edge.from}>${edge.to}`}>
                <path
                  class="graph-edge"
                  d={`M${x1} ${y1}C${x1} ${middle} ${x2} ${middle} ${x2} ${y2}`}
                  marker-end="url(#lineage-arrow)"
                />
                <text class="graph-relation" x={(x1 + x2) / 2} y={middle} dy="0.32em" text-anchor="middle">
                  {edge.relation}
                </text>
              </g>
            );
          })}
          {nodes.map((node) => (
            <g
              key={node.hash}
              class={`graph-node${node.registered ? "" : " graph-node-unregistered"}${node.deprecated ? " graph-node-deprecated" : ""}`}
              transform={`translate(${node.x} ${node.y})`}
            >
              <title>
                {node.name} {node.hash}
                {node.unknown ? " (not listed)" : node.registered ? "" : " (not registered)"}
                {node.deprecated ? " (deprecated)" : ""}
              </title>
              <rect width={nodeWidth} height={nodeHeight} rx="6" />
              <text x="10" y="19" class="graph-name">
                {truncate(node.name, 24)}
              </text>
              <text x="10" y="35" class="graph-hash">
                {shortHex(node.hash)}
              </text>
              <text x="10" y="50" class="graph-state">
                {node.unknown ? "not listed" : node.registered ? "registered" : "unregistered"}
                {node.deprecated ? " · deprecated" : ""}
              </text>
            </g>
          ))}
        </svg>
      </div>
      <ul class="sr-only" aria-label="Model derivations">
        {edges.length === 0 && <li>No model is derived from another.</li>}
        {edges.map((edge) => (
          <li key={`${edge.from}>${edge.to}`}>
            {nameOf(edge.to)} is a {edge.relation} of {nameOf(edge.from)}
          </li>
        ))}
      </ul>
    </div>
  );
}
