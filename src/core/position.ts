/**
 * A source log position. Opaque to everything but its source; within one source, string order is log order,
 * so the pipeline can compare positions without knowing what they mean.
 */
export type Position = string & { readonly __brand: 'Position' };

export function asPosition(value: string): Position {
  return value as Position;
}
