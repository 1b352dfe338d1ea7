/** Names the devnet and its roles agree on (light: no import, so that anything may read them cheaply). */

/** The password devnet keystores are encrypted with: they hold dev-only keys. */
export const devnetPassword = "mycel-devnet";
/** The devnet's gateway key: what a devnet user's read-only commands use when there is no key of their own. */
export const devnetGatewayKeyName = "devnet-gateway";
/** The line a role prints once it serves, followed by JSON (see readyLine). */
export const readyPrefix = "MYCEL_READY ";

/** The machine-readable line a role prints once ready, that the devnet (and tests) wait for. */
export function readyLine(fields: Record<string, unknown>): string {
  return `${readyPrefix}${JSON.stringify(fields)}`;
}

/** Whether the user pointed a role at a chain (flags or environment). */
export function chainRequested(location: { rpcUrl?: string; deployments?: string }): boolean {
  return Boolean(
    location.rpcUrl || location.deployments || process.env.MYCEL_RPC_URL || process.env.MYCEL_DEPLOYMENTS,
  );
}
