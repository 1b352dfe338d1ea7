/** Hints that name what exists when a name is not found: the closest one, and the whole list when it is short. */

/** Edits (insert, delete, replace a character) that turn `a` into `b`, ignoring letter case. */
function editDistance(a: string, b: string): number {
  const left = a.toLowerCase();
  const right = b.toLowerCase();
  let previous = Array.from({ length: right.length + 1 }, (_, index) => index);
  for (let row = 1; row <= left.length; row++) {
    const current = [row];
    for (let column = 1; column <= right.length; column++) {
      const replace = (previous[column - 1] ?? 0) + (left[row - 1] === right[column - 1] ? 0 : 1);
      current[column] = Math.min(replace, (previous[column] ?? 0) + 1, (current[column - 1] ?? 0) + 1);
    }
    previous = current;
  }
  return previous[right.length] ?? 0;
}

/** The name closest to `query` if it is close enough to be a likely typo (or contains it), else undefined. */
export function closestName(query: string, names: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = name.toLowerCase().includes(query.toLowerCase()) ? 0 : editDistance(query, name);
    if (!best || distance < best.distance) best = { name, distance };
  }
  if (!best || query.length === 0) return undefined;
  return best.distance <= Math.max(2, Math.floor(query.length / 3)) ? best.name : undefined;
}

/** "did you mean "x"? available: a, b, c" (at most `limit` names listed), or undefined when there are none. */
export function describeAvailable(parameters: {
  query: string;
  names: readonly string[];
  /** What the names are, e.g. "served now". */
  label: string;
  limit?: number;
}): string | undefined {
  const names = [...new Set(parameters.names)].sort();
  if (names.length === 0) return undefined;
  const limit = parameters.limit ?? 10;
  const closest = closestName(parameters.query, names);
  const listed = `${parameters.label}: ${names.slice(0, limit).join(", ")}${names.length > limit ? ` and ${names.length - limit} more` : ""}`;
  return closest ? `did you mean "${closest}"? ${listed}` : listed;
}
