// A client thread of load runs (node:worker_threads), started by runLoad for clientThreads > 1 and
// kept between runs (loadgen/threads.ts). For each run it is sent { type: 'run', input }: it
// makes its own driver from the DriverSpec, opens its share's connections, says 'ready', waits
// for 'start' (the run's start time on the shared clock), runs its share, closes its
// connections and driver, and answers 'done' with its counts, or 'error'. Runs come one at a time.
//
// Messages to the parent: { type: 'ready' } | { type: 'done', result } | { type: 'error', message, stack }

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { DriverSpec, RunInfo, Workload, Driver } from './types.ts';
import { SharedState, clockFrom, type SharedBuffers } from './shared.ts';
import { LoadShare, messagesPerProducer } from './share.ts';

export interface WorkerInput {
  spec: DriverSpec;
  workload: Omit<Workload, 'onProgress'>;
  run: RunInfo;
  buffers: SharedBuffers;
  share: { producers: number[]; consumers: number[] };
  originHr: bigint;
}

export async function loadDriver(spec: DriverSpec): Promise<Driver> {
  const mod = await import(spec.module) as Record<string, unknown>;
  const factory = mod[spec.exportName];
  if (typeof factory !== 'function') throw new TypeError(`${spec.module} has no driver factory ${spec.exportName}`);
  return await (factory as (...args: unknown[]) => Driver | Promise<Driver>)(...spec.args);
}

async function runShare(input: WorkerInput, port: MessagePort, started: Promise<number>): Promise<void> {
  const clock = clockFrom(input.originHr);
  const shared = new SharedState(input.buffers, messagesPerProducer(input.workload));
  const driver = await loadDriver(input.spec);
  const share = new LoadShare(driver, input.workload, shared, input.share, clock);
  let result;
  try {
    await driver.prepare?.(input.run);
    await share.connect();
    port.postMessage({ type: 'ready' });
    result = await share.run(await started);
  } finally {
    await share.close();
    await driver.close?.();
  }
  port.postMessage({ type: 'done', result });
}

if (parentPort !== null && (workerData as { loadgenWorker?: boolean } | undefined)?.loadgenWorker === true) {
  const port = parentPort;
  let onStart: ((startAt: number) => void) | undefined;
  port.on('message', (m: { type: 'run'; input: WorkerInput } | { type: 'start'; startAt: number }) => {
    if (m.type === 'start') {
      onStart?.(m.startAt);
      return;
    }
    const started = new Promise<number>((resolve) => { onStart = resolve; });
    runShare(m.input, port, started).catch((err: unknown) => {
      const e = err as Error;
      port.postMessage({ type: 'error', message: e?.message ?? String(err), stack: e?.stack });
    });
  });
}
