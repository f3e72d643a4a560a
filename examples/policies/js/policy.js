// Example route policy in JavaScript: each ACTIVE instance gets one router,
// Host(`<name>.<domain>`), to its floating (else fixed) address. The same
// policy as examples/policies/python/app.py, byte for byte.
//
// `route` is plain JavaScript on objects shaped like the golden cases'
// instances.json, so `node --test` runs it natively (policy.test.js);
// `policy` at the bottom is the component's export.

// One DNS label, lowercase. Names are written by tenants: anything else could
// change the meaning of the rule (a backtick ends the Host string).
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const NAME = new RegExp(`^${LABEL}$`);
const DOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const ENTRY_POINT = /^[A-Za-z0-9_-]+$/;
const KEYS = ['domain', 'entry_points', 'port'];

export class SettingsError extends Error {
  constructor(message) {
    super(message);
    // componentize-js makes a thrown value's own `payload` the err result;
    // any other Error thrown out of an export traps the module.
    this.payload = message;
  }
}

const quote = JSON.stringify;

function parseSettings(text) {
  let s;
  try {
    s = JSON.parse(text);
  } catch (e) {
    throw new SettingsError(`settings: not JSON: ${e.message}`);
  }
  if (s === null || typeof s !== 'object' || Array.isArray(s)) {
    throw new SettingsError('settings: expected a table');
  }
  for (const key of Object.keys(s).sort()) {
    if (!KEYS.includes(key)) {
      throw new SettingsError(`settings: unknown key ${quote(key)} (known: ${KEYS.join(', ')})`);
    }
  }
  const { domain, port = 80, entry_points: entryPoints = [] } = s;
  if (typeof domain !== 'string' || domain.length > 253 || !DOMAIN.test(domain)) {
    throw new SettingsError('settings: domain: expected a lowercase DNS name, e.g. "apps.example.com"');
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SettingsError('settings: port: expected an integer from 1 to 65535');
  }
  if (!Array.isArray(entryPoints) || !entryPoints.every((e) => typeof e === 'string' && ENTRY_POINT.test(e))) {
    throw new SettingsError('settings: entry_points: expected a list of entry point names');
  }
  return { domain, port, entryPoints };
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// Floating before fixed, then IPv4 before IPv6, network, ip: the result must
// not depend on the order Nova lists them in.
function pickAddress(addresses) {
  for (const kind of ['floating', 'fixed']) {
    const [best] = addresses
      .filter((a) => a.kind === kind)
      .sort((a, b) => (a.version !== 4) - (b.version !== 4) || cmp(a.network, b.network) || cmp(a.ip, b.ip));
    if (best) return best.version === 6 ? `[${best.ip}]` : best.ip;
  }
  return undefined;
}

// JSON with sorted keys, as Python's json.dumps(sort_keys=True): Traefik
// skips a reload when the body's hash is unchanged, so same input, same
// bytes. (JSON.stringify alone would put keys like "10" before "9".)
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${quote(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return quote(v);
}

// settings: JSON text. Returns {config, diagnostics, routes} with config as
// JSON text; throws SettingsError for bad settings.
export function route(settings, instances) {
  const { domain, port, entryPoints } = parseSettings(settings);
  const diagnostics = [];
  const candidates = [];
  const byId = [...instances].sort((a, b) => cmp(a.id ?? '', b.id ?? ''));
  for (const { id = '', name = '', status = '', addresses = [] } of byId) {
    const skip = (level, message) => diagnostics.push({ instance_id: id, level, message });
    const address = pickAddress(addresses);
    if (status.toUpperCase() !== 'ACTIVE') skip('info', `skipped: status ${status}`);
    else if (!NAME.test(name)) skip('warning', `skipped: name ${quote(name)} is not a lowercase DNS label`);
    else if (name.length + 1 + domain.length > 253) {
      skip('warning', `skipped: ${name}.${domain} is longer than 253 characters`);
    } else if (address === undefined) skip('info', 'skipped: no address');
    else candidates.push({ id, name, address });
  }

  // Two instances with one name would fight over one router: neither wins.
  // (A Map, not an object: a VM may well be called "constructor".)
  const uses = new Map();
  for (const { name } of candidates) uses.set(name, (uses.get(name) ?? 0) + 1);
  const routers = {};
  const services = {};
  const routes = [];
  for (const { id, name, address } of candidates) {
    if (uses.get(name) > 1) {
      diagnostics.push({
        instance_id: id,
        level: 'error',
        message: `dropped: name ${quote(name)} is used by ${uses.get(name)} instances`,
      });
      continue;
    }
    const router = { rule: `Host(\`${name}.${domain}\`)`, service: name };
    if (entryPoints.length) router.entryPoints = entryPoints;
    routers[name] = router;
    services[name] = { loadBalancer: { servers: [{ url: `http://${address}:${port}` }] } };
    routes.push({ instance_id: id, address, routers: [name] });
  }

  // stable: an instance's own diagnostics keep their order
  diagnostics.sort((a, b) => cmp(a.instance_id, b.instance_id));
  const config = routes.length ? { http: { routers, services } } : {};
  return { config: canonical(config), diagnostics, routes };
}

// The export of world `route-policy`: WIT records arrive camelCased, enums
// as their lowercase names, and an `err` result is a thrown SettingsError.
export const policy = {
  generate(settings, instances) {
    const out = route(settings, instances);
    // the host logs a module's stdout, one line per line
    console.log(`js policy: ${out.routes.length} of ${instances.length} instances routed`);
    return {
      config: out.config,
      diagnostics: out.diagnostics.map(({ instance_id, level, message }) => ({ instanceId: instance_id, level, message })),
      routes: out.routes.map(({ instance_id, address, routers }) => ({ instanceId: instance_id, address, routers })),
    };
  },
};
