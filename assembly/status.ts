// Core status codes: the only copy. A core operation returns 0 (or a count) for success and
// one of these negative values for failure; each is the negated wire error code of
// docs/protocol.md (src/protocol.ts ERROR_CODES), so the session answers `ERROR(-status)`
// without a translation table. test/protocol.test.ts checks these against src/protocol.ts.

// @ts-ignore: decorator
@inline export const S_OK: i32 = 0;
// @ts-ignore: decorator
@inline export const E_INVALID_ARGUMENT: i32 = -2;
// @ts-ignore: decorator
@inline export const E_EXCLUSIVE: i32 = -4;
// @ts-ignore: decorator
@inline export const E_NO_MEMORY: i32 = -7;
// @ts-ignore: decorator
@inline export const E_NOT_FOUND: i32 = -10;
/** A push that does not fit its topic's maxLength (overflow 'reject'). */
// @ts-ignore: decorator
@inline export const E_QUEUE_FULL: i32 = -12;
/** ack/nack/extend/reject of a lease that has ended (or never was this connection's). */
// @ts-ignore: decorator
@inline export const E_LEASE_EXPIRED: i32 = -13;
