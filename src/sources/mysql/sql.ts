/** Backtick-quotes a MySQL identifier; backticks inside are doubled, so any name is safe to splice. */
export function quoteIdent(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}
