// `turbomq bench`: being written (issue 5).
import { UsageError } from './args.ts';
export async function benchMain(_argv: string[]): Promise<void> {
  throw new UsageError('bench is not available in this build yet');
}
