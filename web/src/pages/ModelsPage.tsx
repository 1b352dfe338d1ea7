/** #/models: the model registry (and served but unregistered models), who serves each, and the lineage graph. */
import type { RegistryList } from "../../../src/explorer/types.ts";
import { Amount } from "../components/Amount.tsx";
import { Badge } from "../components/Badge.tsx";
import { Hex } from "../components/Hex.tsx";
import { LineageGraph } from "../components/LineageGraph.tsx";
import { EmptyNote, LoadState } from "../components/Status.tsx";
import { useToken } from "../explorerInfo.ts";
import { formatTime, isoTime } from "../format.ts";
import { useJson } from "../useJson.ts";

/** The models page. */
export function ModelsPage() {
  const token = useToken();
  const registry = useJson<RegistryList>("/mycel/v1/registry");
  const models = registry.data?.data;
  return (
    <section aria-labelledby="models-heading">
      <h1 id="models-heading">Models</h1>
      {!models && (
        <LoadState
          loading={registry.loading}
          error={registry.error}
          what="the registry"
          onRetry={registry.reload}
        />
      )}
      {registry.data && !registry.data.chain && (
        <p class="note">No chain: there is no model registry, so these are the models providers serve now.</p>
      )}
      {models && models.length === 0 && <EmptyNote>No model is registered or served yet.</EmptyNote>}
      {models && models.length > 0 && (
        <>
          <div class="table-scroll">
            <table>
              <caption>Models ({models.length})</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Hash</th>
                  <th scope="col">License</th>
                  <th scope="col">Publisher</th>
                  <th scope="col">Registered</th>
                  <th scope="col">State</th>
                  <th scope="col">Served by</th>
                </tr>
              </thead>
              <tbody>
                {models.map((model) => (
                  <tr key={model.model_hash}>
                    <th scope="row">
                      {model.metadata_uri && /^https?:\/\//.test(model.metadata_uri) ? (
                        <a href={model.metadata_uri} rel="noreferrer noopener" target="_blank">
                          {model.name}
                        </a>
                      ) : (
                        model.name
                      )}
                    </th>
                    <td>
                      <Hex value={model.model_hash} />
                    </td>
                    <td>{model.license ?? <span class="muted">—</span>}</td>
                    <td>
                      {model.publisher ? <Hex value={model.publisher} /> : <span class="muted">—</span>}
                    </td>
                    <td>
                      {model.registered_at ? (
                        <time dateTime={isoTime(model.registered_at)}>{formatTime(model.registered_at)}</time>
                      ) : (
                        <span class="muted">—</span>
                      )}
                    </td>
                    <td>
                      {!model.registered ? (
                        <Badge tone="warn">unregistered</Badge>
                      ) : model.deprecated ? (
                        <Badge tone="neutral">deprecated</Badge>
                      ) : (
                        <Badge tone="good">registered</Badge>
                      )}
                    </td>
                    <td>
                      {model.served_by.length === 0 ? (
                        <span class="muted">no provider</span>
                      ) : (
                        <>
                          {model.served_by.length} provider{model.served_by.length === 1 ? "" : "s"}
                          <ul class="plain served-by">
                            {model.served_by.map((provider) => (
                              <li key={provider.address}>
                                <Hex value={provider.address} />: in{" "}
                                <Amount value={provider.price_per_million.input} token={token} />, out{" "}
                                <Amount value={provider.price_per_million.output} token={token} /> per 1M
                              </li>
                            ))}
                          </ul>
                        </>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2>Lineage</h2>
          <p class="note">
            Each arrow goes from a model to one derived from it, labelled with how. Dashed boxes are models
            that are served or named but not registered.
          </p>
          <LineageGraph models={models} />
        </>
      )}
    </section>
  );
}
