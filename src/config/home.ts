/** MYCEL_HOME: the one folder that holds a node's models, keys, stores and deployments. */
import { homedir } from "node:os";
import { join } from "node:path";

/** Returns `home` if given, else $MYCEL_HOME, else ~/.mycel. */
export function resolveMycelHome(home?: string): string {
  return home ?? process.env.MYCEL_HOME ?? join(homedir(), ".mycel");
}
