// A throw-away certificate for TLS tests, made with the openssl command (Debian's openssl
// package; .ci/run installs it): self-signed, for 127.0.0.1 and localhost, valid one day,
// in a temporary directory removed at exit. Tests skip with the reason when openssl cannot run.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificate {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

let made: TestCertificate | { skip: string } | undefined;

export function testCertificate(): TestCertificate | { skip: string } {
  if (made !== undefined) return made;
  const dir = mkdtempSync(join(tmpdir(), 'turbomq-tls-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const certPath = join(dir, 'cert.pem'), keyPath = join(dir, 'key.pem');
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
    made = { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), certPath, keyPath };
  } catch (err) {
    made = { skip: `openssl cannot make a test certificate (apt-get install openssl): ${(err as Error).message.split('\n')[0]}` };
  }
  return made;
}
