// turbomq for Node: the engine you embed, the network client, and their types.
import './client/node.ts';

export { TurboEngine } from './engine/engine.ts';
export type { EngineStats, ThreadStats, TopicSummary, MessageStats } from './engine/stats.ts';
export type { EngineOptions, Logger, UserEntry, TlsServerOptions, TlsClientOptions } from './options.ts';
export { hashToken, generateToken } from './engine/auth.ts';
export { TurboClient, type ClientOptions, type StatusEvent } from './client/client.ts';
export type { Queue, Message, PopTimeout, PopOptions, PushOptions, QueueSettings, TopicStats, SubscribeOptions, Subscription } from './client/queue.ts';
export { TurboError, type ErrorCode, isTurboError } from './errors.ts';
export { VERSION } from './version.ts';
