/** The cli part: the `mycel` command. */
export { buildProgram, main } from "./main.ts";
