// A peer's address as "1.2.3.4:5678" or "[::1]:5678", for log lines.

export function formatRemoteAddress(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return 'unknown';
  return `${address.includes(':') ? `[${address}]` : address}:${port ?? 0}`;
}
