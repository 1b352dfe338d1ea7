/** What `mycel devnet` prints once the network is up: where everything is, and how to try it. */
import type { Devnet } from "../node/index.ts";

/** Prints the devnet's endpoints, accounts and runnable examples. */
export function printDevnet(devnet: Devnet) {
  const { url, model, chain } = devnet;
  const body = JSON.stringify({
    model: model.name,
    messages: [{ role: "user", content: "Hello!" }],
    max_tokens: 32,
  });
  console.log(`
Mycel devnet is up: ${devnet.providers.length} providers, a validator and a gateway, all on 127.0.0.1
${devnet.providers.map((p, i) => `  provider-${i + 1}: ${p.address} (peer ${p.peerId})`).join("\n")}
  validator: ${devnet.validator.address} (peer ${devnet.validator.peerId}), audits 1 answer in 5
  Explorer (web app): ${url}/
  OpenAI-compatible endpoint: ${url}/v1
  Providers seen by the gateway: ${url}/mycel/v1/providers
  Receipts: ${url}/mycel/v1/receipts/<request id>
  Chain (anvil): ${chain.rpcUrl}, chain id ${chain.deployments.chainId}
    contracts: ${chain.deploymentsPath}
${Object.entries(chain.deployments.contracts)
  .map(([name, address]) => `      ${name.padEnd(17)} ${address}`)
  .join("\n")}
    dev keys (password "${devnet.password}"): devnet-provider-1..${devnet.providers.length}, devnet-gateway,
      devnet-validator, devnet-challenger
    e.g. mycel wallet                    (the gateway's channels and payments; no password needed)
         mycel channel list --key devnet-provider-1
         MYCEL_PASSWORD=${devnet.password} mycel provider status --key devnet-provider-1
         mycel model info ${model.hash.slice(0, 12)}

Try it with curl:
  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '${body}'

Or with the openai package (node, ESM):
  import OpenAI from "openai";
  const client = new OpenAI({ baseURL: "${url}/v1", apiKey: "unused" });
  const answer = await client.chat.completions.create({ model: "${model.name}", messages: [{ role: "user", content: "Hello!" }] });
  console.log(answer.choices[0].message.content, answer.mycel?.receipts);

Test models have random weights: their answers are noise, but real llama.cpp inference over real libp2p.
Press Ctrl-C to stop everything.
`);
}
