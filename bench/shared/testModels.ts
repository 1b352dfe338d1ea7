/** Test models the benches make: generated and added to a MYCEL_HOME's store. */
import {
  type GenerateTestModelParameters,
  generateTestModel,
  type ModelRecord,
  openModelStore,
} from "../../src/model/index.ts";

/** Makes a test model (`make-test`'s generator) and adds it to `home`'s store; `source` names the bench. */
export async function addTestModel(
  parameters: { home: string; source: string } & GenerateTestModelParameters,
): Promise<{ model: ModelRecord; made: ReturnType<typeof generateTestModel> }> {
  const { home, source, ...generate } = parameters;
  const made = generateTestModel(generate);
  const { model } = await openModelStore({ home }).addBytes({ bytes: made.bytes, name: made.name, source });
  return { model, made };
}
