/** Parsers of the `mycel` command's flags, and the configuration a command runs with. */
import { type Command, InvalidArgumentError } from "commander";
import { type ConfigOverrides, loadConfig, type MycelConfig, roleDefaults } from "../config/index.ts";

/** An integer flag within [minimum, maximum]. */
export function integer(name: string, minimum = 0, maximum = Number.MAX_SAFE_INTEGER) {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < minimum || parsed > maximum)
      throw new InvalidArgumentError(`${name} must be an integer from ${minimum} to ${maximum}`);
    return parsed;
  };
}

/** A number flag from 0 to 1. */
export function fraction(name: string) {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < 0 || parsed > 1)
      throw new InvalidArgumentError(`${name} must be a number from 0 to 1`);
    return parsed;
  };
}

/** A price: a whole number of the token's smallest unit per 1M tokens. */
export function price(value: string): bigint {
  if (!/^(0|[1-9][0-9]{0,30})$/.test(value))
    throw new InvalidArgumentError("a price is a whole number of the token's smallest unit per 1M tokens");
  return BigInt(value);
}

/** A repeatable flag's values. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** An Ethereum address (checksummed on output). */
export function address(value: string): `0x${string}` {
  if (!/^0x[0-9a-fA-F]{40}$/.test(value))
    throw new InvalidArgumentError(`"${value}" is not an address (0x + 40 hex digits)`);
  return value as `0x${string}`;
}

/** A channel id: 0x and 64 hex digits. */
export function channelId(value: string): `0x${string}` {
  if (!/^0x[0-9a-fA-F]{64}$/.test(value))
    throw new InvalidArgumentError(`"${value}" is not a channel id (0x + 64 hex digits)`);
  return value.toLowerCase() as `0x${string}`;
}

/** The configuration of a command: defaults < config file < environment < its flags (and the global --home). */
export function configFrom(command: Command, overrides: ConfigOverrides = {}): MycelConfig {
  const globals = command.optsWithGlobals<{ home?: string }>();
  return loadConfig({ ...overrides, home: globals.home });
}

/** The flags every chain-using command takes. */
export type ChainFlags = { rpcUrl?: string; deployments?: string };

/** Adds --rpc-url and --deployments. */
export function addChainOptions(command: Command): Command {
  return command
    .option(
      "--rpc-url <url>",
      "EVM JSON-RPC endpoint (default: $MYCEL_RPC_URL, else the one in the deployments file)",
    )
    .option(
      "--deployments <file>",
      "contract addresses (default: $MYCEL_DEPLOYMENTS, else MYCEL_HOME/deployments.json, which `mycel devnet` writes)",
    );
}

/** The options every libp2p role takes: where to listen, whom to join through, which key to use. */
export function addPeerOptions(command: Command): Command {
  return command
    .option(
      "--listen <multiaddr>",
      "libp2p address to listen on (repeatable; default /ip4/127.0.0.1/tcp/0; `none`: listen on nothing, reachable only through relays)",
      collect,
    )
    .option(
      "--bootstrap <multiaddr>",
      "peer to join the network through, with /p2p/<id> (repeatable; default: the deployments file's bootstrap list)",
      collect,
    )
    .option("--key <name>", "keystore name (see `mycel init`)", "default");
}

/** --shutdown-timeout: how long a role may take to stop. */
export function addShutdownOption(command: Command): Command {
  return command.option(
    "--shutdown-timeout <seconds>",
    "longest a clean stop may take (a provider settles its vouchers first; the rest is settled at the next start)",
    integer("--shutdown-timeout", 1, 600),
    roleDefaults.shutdownSeconds,
  );
}

/** The flags of the HTTP limits an API server takes (`mycel serve`, `mycel gateway`). */
export type HttpLimitFlags = { bodyTimeout?: number; maxConnections?: number };

/** --body-timeout and --max-connections: the API server's request deadline and connection cap. */
export function addHttpLimitOptions(command: Command): Command {
  return command
    .option(
      "--body-timeout <seconds>",
      "an API request (headers and body) must arrive within this, else 408 (default 30)",
      integer("--body-timeout", 10, 3600),
    )
    .option(
      "--max-connections <n>",
      "API connections open at once (default 512)",
      integer("--max-connections", 1, 1_000_000),
    );
}

/** The server settings of {@link addHttpLimitOptions}' flags, for the config. */
export function httpLimitsOf(flags: HttpLimitFlags): { bodyTimeoutMs?: number; maxConnections?: number } {
  return {
    bodyTimeoutMs: flags.bodyTimeout === undefined ? undefined : flags.bodyTimeout * 1000,
    maxConnections: flags.maxConnections,
  };
}

/** The flags of a node's relay service and NAT traversal (`mycel relay`, and providers and validators). */
export type RelayFlags = {
  /** False with --no-relay-service. */
  relayService?: boolean;
  maxReservations: number;
  relayDataLimit: number;
  relayDurationLimit: number;
  upnp?: boolean;
  announce?: string[];
};

/** --upnp (map the listening port on the router, opt-in) and --announce (a public address forwarded by hand). */
export function addUpnpOption(command: Command): Command {
  return command
    .option(
      "--upnp",
      "ask the router to forward a port to this node with UPnP (off by default; AutoNAT then confirms it)",
    )
    .option(
      "--announce <multiaddr>",
      "address to announce instead of the listen addresses (it counts as publicly reachable), e.g. /ip4/<public ip>/tcp/4001 for a port you forwarded, or /dns4/node.example.org/tcp/4001 (repeatable)",
      collect,
    );
}

/** The relay limits (--max-reservations, --relay-data-limit, --relay-duration-limit) and --upnp. */
export function addRelayOptions(command: Command): Command {
  return addUpnpOption(
    command
      .option(
        "--max-reservations <n>",
        "relay: nodes that may hold a reservation (be dialled through this node) at once",
        integer("--max-reservations", 1, 10_000),
        roleDefaults.relayMaxReservations,
      )
      .option(
        "--relay-data-limit <bytes>",
        "relay: bytes one relayed connection may carry (both ways) before the relay resets it",
        integer("--relay-data-limit", 1024, 2 ** 40),
        roleDefaults.relayDataLimitBytes,
      )
      .option(
        "--relay-duration-limit <seconds>",
        "relay: seconds one relayed connection may stay open",
        integer("--relay-duration-limit", 1, 86_400),
        roleDefaults.relayDurationLimitSeconds,
      ),
  );
}

/** --no-relay-service beside the relay options: for roles that relay once they are publicly reachable. */
export function addRelayServiceOptions(command: Command): Command {
  return addRelayOptions(
    command.option(
      "--no-relay-service",
      "never relay for nodes that are not reachable (by default a provider or validator does, once AutoNAT finds it publicly reachable)",
    ),
  );
}

/** The relay service a role's flags ask for: `offer` unless --no-relay-service. */
export function relayServiceOf(flags: RelayFlags, offer: "always" | "when-reachable") {
  return {
    offer: flags.relayService === false ? ("never" as const) : offer,
    maxReservations: flags.maxReservations,
    dataLimitBytes: flags.relayDataLimit,
    durationLimitSeconds: flags.relayDurationLimit,
  };
}
