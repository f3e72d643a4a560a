// Runs policy.js natively (node, no component) on the golden cases in
// cases/<case>/ (the format of `traefik-openstack test`: an expected.json with
// "error" is a case whose settings must be refused with that text) and on
// more bad settings.
//
//   node --test examples/policies/js/
//   UPDATE_GOLDEN=1 node --test examples/policies/js/   # rewrites expected.json; review the diff
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { SettingsError, route } from './policy.js';

const CASES = join(import.meta.dirname, 'cases');
const read = (...p) => readFileSync(join(CASES, ...p), 'utf8');

function run(name, reverse = false) {
  let instances = JSON.parse(read(name, 'instances.json'));
  if (reverse) {
    instances = structuredClone(instances).reverse();
    for (const i of instances) i.addresses?.reverse();
  }
  const out = route(read(name, 'settings.json'), instances);
  return [out.config, { ...out, config: JSON.parse(out.config) }];
}

// Sorted keys, two-space indent: the files the Python tests write.
const pretty = (v) => JSON.stringify(sortKeys(v), null, 2);
const sortKeys = (v) =>
  Array.isArray(v) ? v.map(sortKeys)
  : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]))
  : v;

for (const name of readdirSync(CASES).sort()) {
  test(`case ${name}`, () => {
    const expected = JSON.parse(read(name, 'expected.json'));
    if ('error' in expected) {
      assert.throws(() => run(name), (e) => e instanceof SettingsError && e.message.includes(expected.error));
      return;
    }
    const [text, doc] = run(name);
    // Traefik hashes the body: Nova's listing order must not matter
    assert.equal(run(name, true)[0], text);
    if ((process.env.UPDATE_GOLDEN ?? '0') !== '0') {
      writeFileSync(join(CASES, name, 'expected.json'), `${pretty(doc)}\n`);
      return;
    }
    assert.deepEqual(doc, expected);
  });
}

test('bad settings are refused with a message', () => {
  for (const [settings, needle] of [
    ['not json', 'not JSON'],
    ['[]', 'expected a table'],
    ['null', 'expected a table'],
    ['{}', 'domain'],
    ['{"domain": "apps.example.com", "prot": 80}', 'unknown key "prot"'],
    ['{"domain": "apps.example.com", "__proto__": {"port": 1}}', 'unknown key "__proto__"'],
    ['{"domain": "Apps.example.com"}', 'domain'],
    ['{"domain": "apps.example.com\\n"}', 'domain'],
    ['{"domain": "x`) || Host(`y"}', 'domain'],
    ['{"domain": "apps.example.com", "port": 0}', 'port'],
    ['{"domain": "apps.example.com", "port": "80"}', 'port'],
    ['{"domain": "apps.example.com", "port": 80.5}', 'port'],
    ['{"domain": "apps.example.com", "entry_points": "web"}', 'entry_points'],
    ['{"domain": "apps.example.com", "entry_points": ["web,websecure"]}', 'entry_points'],
  ]) {
    assert.throws(() => route(settings, []), (e) => e instanceof SettingsError && e.payload.includes(needle), settings);
  }
});

test('defaults', () => {
  assert.deepEqual(route('{"domain": "apps.example.com"}', []), { config: '{}', diagnostics: [], routes: [] });
});
