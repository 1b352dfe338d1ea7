/**
 * The API key of a gateway that needs one: asked for once (the gateway answered 401), kept in this tab's
 * sessionStorage (gone when the tab closes), and sent as `Authorization: Bearer` on every request, the live feed's
 * too. It never goes into a URL, where logs and history would keep it.
 */

const storageKey = "mycel.apiKey";
const keyNeededEvent = "mycel:key-needed";

/** The key this tab holds, if any. */
export function storedApiKey(): string | undefined {
  try {
    return window.sessionStorage.getItem(storageKey) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Keeps `key` for this tab (an empty one forgets it). */
export function saveApiKey(key: string) {
  const trimmed = key.trim();
  if (trimmed) window.sessionStorage.setItem(storageKey, trimmed);
  else window.sessionStorage.removeItem(storageKey);
}

/** The Authorization header for the key this tab holds (none without one). */
export function authHeaders(): Record<string, string> {
  const key = storedApiKey();
  return key ? { authorization: `Bearer ${key}` } : {};
}

let keyWasNeeded = false;

/** Tells the app that the gateway refused a request for want of a (good) key. */
export function announceKeyNeeded() {
  keyWasNeeded = true;
  window.dispatchEvent(new Event(keyNeededEvent));
}

/** Whether a request was refused for want of a key since the page loaded. */
export function wasKeyNeeded(): boolean {
  return keyWasNeeded;
}

/** Calls `listener` whenever a request was refused for want of a key; returns the unsubscribe function. */
export function onKeyNeeded(listener: () => void): () => void {
  window.addEventListener(keyNeededEvent, listener);
  return () => window.removeEventListener(keyNeededEvent, listener);
}
