'use strict';
// The Node function runtime: `node flotilla-fn.js` serves one function; `require('flotilla-fn')`
// gives functions Response and CloudEvent. Telemetry is hand-written (the wire formats, Prometheus
// text 0.0.4, W3C traceparent and OTLP/HTTP JSON, are small); CloudEvents use the official SDK. It mirrors
// flotilla/fn/runtime (Python) field for field; tests/fn/test_conformance.py holds both to it.

const http = require('http');
const https = require('https');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { AsyncLocalStorage } = require('async_hooks');
const { performance } = require('perf_hooks');

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
const HEALTH_LIVE = '/health/liveness';
const HEALTH_READY = '/health/readiness';
const METRICS = '/metrics';
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const spanStore = new AsyncLocalStorage();

class Response {
  constructor(body = '', { status = 200, headers = {} } = {}) {
    this.body = body;
    this.status = status;
    this.headers = headers;
  }
}

// A CloudEvents 1.0 event as a handler sees and returns it (fields as in the Python runtime);
// `structured: true` on a reply sends it in structured content mode.
class CloudEvent {
  constructor({ type, source, data = null, id = crypto.randomUUID(), specversion = '1.0',
    datacontenttype = 'application/json', subject = null,
    time = new Date().toISOString(), extensions = {}, dataschema = null, structured = false }) {
    Object.assign(this, { type, source, data, id, specversion, datacontenttype, subject, time,
      extensions, dataschema, structured });
  }
}

// --- logs --------------------------------------------------------------------------------------
let faasName = 'function';
const rawWrite = process.stdout.write.bind(process.stdout);
function logLine(level, logger, args) {
  // Errors go to `exception` (as Python's traceback does), the rest joins into `msg`.
  const errors = args.filter((a) => a instanceof Error);
  const msg = args.filter((a) => !(a instanceof Error))
    .map((a) => (typeof a === 'string' ? a : safeJson(a))).join(' ');
  const doc = { time: new Date().toISOString(), level, logger, msg, 'faas.name': faasName };
  const span = spanStore.getStore();
  if (span) { doc.trace_id = span.traceId; doc.span_id = span.spanId; }
  if (errors.length) doc.exception = errors.map((e) => e.stack).join('\n');
  rawWrite(JSON.stringify(doc) + '\n');
}
function safeJson(v) { try { return JSON.stringify(v); } catch (e) { return String(v); } }
function makeLogger(name) {
  return {
    debug: (...a) => logLine('debug', name, a), info: (...a) => logLine('info', name, a),
    warning: (...a) => logLine('warning', name, a), warn: (...a) => logLine('warning', name, a),
    error: (...a) => logLine('error', name, a),
  };
}
const runtimeLog = makeLogger('flotilla.fn');

// --- metrics -----------------------------------------------------------------------------------
function esc(v) { return String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"'); }
function num(v) { return Number.isInteger(v) ? String(v) : String(v); }
class Histogram {
  constructor() { this.counts = new Array(BUCKETS.length + 1).fill(0); this.sum = 0; this.count = 0; }
  observe(v) {
    let i = 0;
    while (i < BUCKETS.length && BUCKETS[i] < v) i++;
    this.counts[i]++; this.sum += v; this.count++;
  }
  render(name, labels) {
    const out = []; let running = 0;
    BUCKETS.forEach((b, i) => { running += this.counts[i]; out.push(`${name}_bucket{${labels},le="${num(b)}"} ${running}`); });
    out.push(`${name}_bucket{${labels},le="+Inf"} ${this.count}`);
    out.push(`${name}_sum{${labels}} ${num(this.sum)}`);
    out.push(`${name}_count{${labels}} ${this.count}`);
    return out;
  }
}
class Metrics {
  constructor(identity) {
    this.identity = identity; this.invocations = new Map(); this.errors = new Map();
    this.durations = new Map(); this.coldstarts = new Map(); this.init = new Histogram(); this.cold = true;
  }
  labels(t) {
    const i = this.identity;
    return `faas_name="${esc(i.name)}",faas_version="${esc(i.version)}",faas_instance="${esc(i.instance)}",faas_trigger="${esc(t)}"`;
  }
  record(trigger, seconds, error) {
    const target = error ? this.errors : this.invocations;
    target.set(trigger, (target.get(trigger) || 0) + 1);
    if (!this.durations.has(trigger)) this.durations.set(trigger, new Histogram());
    this.durations.get(trigger).observe(seconds);
    const cold = this.cold; this.cold = false;
    if (cold) this.coldstarts.set(trigger, (this.coldstarts.get(trigger) || 0) + 1);
    return cold;
  }
  render() {
    const sorted = (m) => [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const out = [
      '# HELP faas_invocations_total Number of successful invocations.',
      '# TYPE faas_invocations_total counter',
      ...sorted(this.invocations).map(([t, n]) => `faas_invocations_total{${this.labels(t)}} ${n}`),
      '# HELP faas_errors_total Number of invocation errors.',
      '# TYPE faas_errors_total counter',
      ...sorted(this.errors).map(([t, n]) => `faas_errors_total{${this.labels(t)}} ${n}`),
      '# HELP faas_coldstarts_total Number of invocation cold starts.',
      '# TYPE faas_coldstarts_total counter',
      ...sorted(this.coldstarts).map(([t, n]) => `faas_coldstarts_total{${this.labels(t)}} ${n}`),
      "# HELP faas_invoke_duration_seconds Duration of the function's logic execution.",
      '# TYPE faas_invoke_duration_seconds histogram',
    ];
    for (const [t, h] of sorted(this.durations)) out.push(...h.render('faas_invoke_duration_seconds', this.labels(t)));
    out.push('# HELP faas_init_duration_seconds Process start to serving (cold start time).',
      '# TYPE faas_init_duration_seconds histogram',
      ...this.init.render('faas_init_duration_seconds', this.labels('http')));
    return out.join('\n') + '\n';
  }
}

// --- tracing -----------------------------------------------------------------------------------
function parseTraceparent(value) {
  if (!value) return null;
  const m = TRACEPARENT.exec(String(value).trim().toLowerCase());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]) || /^0+$/.test(m[3])) return null;
  return { traceId: m[2], parentId: m[3], sampled: (parseInt(m[4], 16) & 1) === 1 };
}
function newSpan(name, traceparent) {
  const parent = parseTraceparent(traceparent);
  return {
    traceId: parent ? parent.traceId : crypto.randomBytes(16).toString('hex'),
    spanId: crypto.randomBytes(8).toString('hex'),
    parentId: parent ? parent.parentId : '',
    sampled: parent ? parent.sampled : true,
    name, startNs: BigInt(Date.now()) * 1000000n + BigInt(Math.floor((performance.now() % 1) * 1e6)),
    endNs: 0n, attributes: {}, error: null,
  };
}
function traceparentOf(span) { return `00-${span.traceId}-${span.spanId}-${span.sampled ? '01' : '00'}`; }
function otlpValue(v) {
  if (typeof v === 'boolean') return { boolValue: v };
  if (Number.isInteger(v)) return { intValue: String(v) };
  if (typeof v === 'number') return { doubleValue: v };
  return { stringValue: String(v) };
}
function otlpAttributes(attrs) { return Object.entries(attrs).map(([key, v]) => ({ key, value: otlpValue(v) })); }
function spanToOtlp(s) {
  const out = {
    traceId: s.traceId, spanId: s.spanId, name: s.name, kind: 2,
    startTimeUnixNano: String(s.startNs), endTimeUnixNano: String(s.endNs),
    attributes: otlpAttributes(s.attributes),
    status: s.error ? { code: 2, message: s.error } : { code: 0 },
  };
  if (s.parentId) out.parentSpanId = s.parentId;
  return out;
}
function parseKv(value) {
  const out = {};
  for (const item of (value || '').split(',')) {
    const i = item.indexOf('=');
    if (i > 0) out[item.slice(0, i).trim()] = decodeURIComponent(item.slice(i + 1).trim());
  }
  return out;
}
class OtlpExporter {
  constructor(endpoint, resource, headers, delayMs, timeoutMs) {
    this.url = new URL(endpoint); this.resource = otlpAttributes(resource);
    this.headers = { 'content-type': 'application/json', ...headers };
    this.queue = []; this.dropped = 0; this.maxQueue = 2048; this.inFlight = null; this.timeoutMs = timeoutMs;
    this.agent = new (this.url.protocol === 'https:' ? https : http).Agent({ keepAlive: true, maxSockets: 1 });
    this.timer = setInterval(() => this.flush(), delayMs); this.timer.unref();
  }
  submit(span) { if (this.queue.length >= this.maxQueue) this.dropped++; else this.queue.push(span); }
  // At most one export at a time: a collector that never answers costs one socket, not one per
  // interval, and the request is abandoned after OTEL_EXPORTER_OTLP_TIMEOUT.
  flush() {
    if (this.inFlight) return this.inFlight;
    if (!this.queue.length) return Promise.resolve();
    this.inFlight = this.post().finally(() => { this.inFlight = null; });
    return this.inFlight;
  }
  post() {
    const batch = this.queue.splice(0, 512);
    const body = JSON.stringify({ resourceSpans: [{ resource: { attributes: this.resource },
      scopeSpans: [{ scope: { name: 'flotilla.fn' }, spans: batch.map(spanToOtlp) }] }] });
    const mod = this.url.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      const req = mod.request(this.url, { method: 'POST', agent: this.agent, headers: { ...this.headers, 'content-length': Buffer.byteLength(body) }, timeout: this.timeoutMs }, (res) => {
        res.resume(); res.on('end', resolve); res.on('error', resolve);
      });
      req.on('error', (e) => { runtimeLog.warning(`OTLP export of ${batch.length} spans to ${this.url} failed: ${e.message}`); resolve(); });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.end(body);
    });
  }
  // Flush what is queued, but never for longer than `deadlineMs` (the pod's grace is finite).
  async shutdown(deadlineMs = 3000) {
    clearInterval(this.timer);
    const deadline = Date.now() + deadlineMs;
    const drain = (async () => { while (this.queue.length && Date.now() < deadline) await this.flush(); })();
    let timer;
    await Promise.race([drain, new Promise((r) => { timer = setTimeout(r, deadlineMs); })]);
    clearTimeout(timer); this.agent.destroy();
  }
}
function exporterFromEnv(env, identity) {
  if ((env.OTEL_SDK_DISABLED || '').toLowerCase() === 'true' || (env.OTEL_TRACES_EXPORTER || 'otlp').toLowerCase() === 'none') return null;
  let endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (!endpoint && env.OTEL_EXPORTER_OTLP_ENDPOINT) endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '') + '/v1/traces';
  if (!endpoint) return null;
  const resource = {
    ...parseKv(env.OTEL_RESOURCE_ATTRIBUTES), 'service.name': env.OTEL_SERVICE_NAME || identity.name,
    'faas.name': identity.name, 'faas.version': identity.version, 'faas.instance': identity.instance,
    'telemetry.sdk.name': 'flotilla-fn', 'telemetry.sdk.language': 'nodejs',
  };
  const headers = parseKv(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS || env.OTEL_EXPORTER_OTLP_HEADERS);
  return new OtlpExporter(endpoint, resource, headers, Number(env.OTEL_BSP_SCHEDULE_DELAY || 1000),
    Number(env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT || env.OTEL_EXPORTER_OTLP_TIMEOUT || 10000));
}

// --- CloudEvents -------------------------------------------------------------------------------
// Parsing and serialising go through the official `cloudevents` npm package (required only by
// cloudevent functions; `fn run` and the image put the pinned copy on NODE_PATH). Added here, as
// in the Python runtime: percent-decoding of ce- headers (and encoding on replies), a strict
// RFC 3339 `time` (the SDK replaces a bad one with "now"), CloudEvents 1.0 only, and data typed
// by its content type (JSON parsed, text/* a string, anything else a Buffer).
const STRUCTURED = 'application/cloudevents+json';
const BATCH = 'application/cloudevents-batch+json';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const CE_KNOWN = new Set(['id', 'source', 'type', 'specversion', 'datacontenttype', 'subject', 'time',
  'dataschema', 'data', 'data_base64', 'datacontentencoding', 'schemaurl']);
let ceSdkModule = null;
function ceSdk() { if (!ceSdkModule) ceSdkModule = require('cloudevents'); return ceSdkModule; }
function mediaType(ct) { return String(ct || '').split(';')[0].trim().toLowerCase(); }
function isJson(ct) {
  const t = mediaType(ct);
  return t === 'application/json' || t.endsWith('+json') || t === 'text/json';
}
function typedData(data, ct) {
  if (data === null || data === undefined) return null;
  let raw;
  if (Buffer.isBuffer(data)) raw = data;
  else if (ArrayBuffer.isView(data)) raw = Buffer.from(data); // the SDK's data_base64 bytes
  else if (typeof data === 'string') raw = Buffer.from(data, 'utf8');
  else return data;
  if (!raw.length) return null;
  if (isJson(ct)) {
    try { return JSON.parse(raw.toString('utf8')); } catch (e) { throw new Error(`CloudEvent data is not JSON: ${e.message}`); }
  }
  return mediaType(ct).startsWith('text/') ? raw.toString('utf8') : raw;
}
function percentDecode(v) {
  try { return decodeURIComponent(v); } catch (e) { throw new Error(`header value '${v}' is not percent-encoded UTF-8`); }
}
function percentEncode(v) {
  return Array.from(Buffer.from(String(v), 'utf8'))
    .map((b) => (b > 0x20 && b < 0x7f && b !== 0x22 && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}
function checkEvent(attrs) {
  if (String(attrs.specversion) !== '1.0') throw new Error(`unsupported CloudEvents specversion '${attrs.specversion}'`);
  for (const name of ['id', 'source', 'type']) if (!attrs[name]) throw new Error(`not a CloudEvent: empty ${name}`);
  if (attrs.time !== undefined && attrs.time !== null && !(typeof attrs.time === 'string' && RFC3339.test(attrs.time))) {
    throw new Error(`CloudEvent time '${attrs.time}' is not an RFC 3339 timestamp`);
  }
}
function sdkToEvent(message) {
  try { return ceSdk().HTTP.toEvent(message); } catch (e) {
    const detail = e.errors ? ` ${JSON.stringify(e.errors)}` : '';
    throw new Error(`not a CloudEvent: ${e.message}${detail}`);
  }
}
// Our view of a received event. `time` is the sender's own string (or none).
function toOurs(ev, data, time) {
  checkEvent({ ...ev, time });
  const extensions = {};
  for (const [k, v] of Object.entries(ev)) if (!CE_KNOWN.has(k) && v !== undefined) extensions[k] = String(v);
  return new CloudEvent({ type: String(ev.type), source: String(ev.source), data, id: String(ev.id),
    datacontenttype: ev.datacontenttype || null, subject: ev.subject || null, time: time || null,
    dataschema: ev.dataschema || null, extensions });
}
function structuredEvent(doc) {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('structured CloudEvent must be a JSON object');
  for (const name of ['specversion', 'id', 'source', 'type']) if (!doc[name]) throw new Error(`not a CloudEvent: missing ${name}`);
  if (doc.data_base64 !== undefined && !(typeof doc.data_base64 === 'string' && BASE64.test(doc.data_base64))) throw new Error('data_base64 is not base64');
  const ev = sdkToEvent({ headers: { 'content-type': STRUCTURED }, body: JSON.stringify(doc) });
  const data = doc.data_base64 !== undefined ? typedData(ev.data, ev.datacontenttype) : (doc.data === undefined ? null : doc.data);
  return toOurs(ev, data, doc.time);
}
function parseJson(body, what) {
  try { return JSON.parse(body.toString('utf8')); } catch (e) { throw new Error(`${what} is not JSON: ${e.message}`); }
}
// The events in a request and its mode; throws with the reason when it is not CloudEvents 1.0.
function decodeEvents(headers, body) {
  const media = mediaType(headers['content-type']);
  if (media === BATCH) {
    const items = parseJson(body, 'CloudEvents batch');
    if (!Array.isArray(items) || !items.every((i) => i && typeof i === 'object' && !Array.isArray(i))) throw new Error('a CloudEvents batch is a JSON array of objects');
    return [items.map(structuredEvent), 'batch'];
  }
  if (media === STRUCTURED) return [[structuredEvent(parseJson(body, 'structured CloudEvent'))], 'structured'];
  const decoded = {};
  for (const [k, v] of Object.entries(headers)) decoded[k] = k.startsWith('ce-') ? percentDecode(v) : v;
  if (!Object.keys(decoded).some((k) => k.startsWith('ce-'))) throw new Error('not a CloudEvent: no ce- headers, not application/cloudevents+json');
  const missing = ['id', 'source', 'type', 'specversion'].filter((a) => !decoded[`ce-${a}`]);
  if (missing.length) throw new Error(`not a CloudEvent: missing ${missing.map((a) => `ce-${a}`).join(', ')}`);
  const ev = sdkToEvent({ headers: decoded, body });
  return [[toOurs(ev, typedData(body, headers['content-type']), decoded['ce-time'])], 'binary'];
}
function toSdkEvent(reply) {
  const { CloudEvent: SdkEvent } = ceSdk();
  if (reply instanceof SdkEvent) return reply;
  const r = reply instanceof CloudEvent ? reply : new CloudEvent(reply);
  const attrs = { ...(r.extensions || {}), id: r.id, source: r.source, type: r.type, specversion: r.specversion || '1.0' };
  for (const name of ['subject', 'time', 'dataschema']) if (r[name]) attrs[name] = r[name];
  let ct = r.datacontenttype;
  if ((Buffer.isBuffer(r.data) || r.data instanceof Uint8Array) && ct === 'application/json') ct = 'application/octet-stream';
  if (r.data !== null && r.data !== undefined) { attrs.data = r.data; if (ct) attrs.datacontenttype = ct; }
  checkEvent(attrs);
  return new SdkEvent(attrs, true);
}
function encodeReply(reply) {
  const { HTTP } = ceSdk();
  const ev = toSdkEvent(reply);
  if (reply.structured) return [{ 'content-type': STRUCTURED }, Buffer.from(HTTP.structured(ev).body)];
  const msg = HTTP.binary(ev);
  const headers = {};
  for (const [k, v] of Object.entries(msg.headers)) {
    const key = k.toLowerCase();
    headers[key] = key.startsWith('ce-') ? percentEncode(v) : String(v);
  }
  if (ev.data === undefined || ev.data === null) { delete headers['content-type']; return [headers, Buffer.alloc(0)]; }
  const body = msg.body;
  return [headers, Buffer.isBuffer(body) ? body : (ArrayBuffer.isView(body) ? Buffer.from(body) : Buffer.from(String(body)))];
}
function encodeBatch(replies) {
  const { HTTP } = ceSdk();
  const items = replies.map((r) => JSON.parse(HTTP.structured(toSdkEvent(r)).body));
  return [{ 'content-type': BATCH }, Buffer.from(JSON.stringify(items))];
}

// --- responses ---------------------------------------------------------------------------------
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
function invalidResponse(message) { return Object.assign(new Error(message), { invalidResponse: true }); }
function encodeResult(value) {
  let status = 200; let extra = {};
  if (value instanceof Response) {
    status = value.status; extra = value.headers || {}; value = value.body;
    if (!Number.isInteger(status) || status < 100 || status > 599) throw invalidResponse(`status ${JSON.stringify(status)} is not an HTTP status (100-599)`);
    if (typeof extra !== 'object' || Array.isArray(extra)) throw invalidResponse('headers must be an object');
  }
  let body; let ctype = null;
  if (value === null || value === undefined) { body = Buffer.alloc(0); if (status === 200) status = 204; }
  else if (Buffer.isBuffer(value) || value instanceof Uint8Array) { body = Buffer.from(value); ctype = 'application/octet-stream'; }
  else if (typeof value === 'string') { body = Buffer.from(value); ctype = 'text/plain; charset=utf-8'; }
  else { body = Buffer.from(JSON.stringify(value)); ctype = 'application/json'; }
  const headers = {};
  for (const [k, v] of Object.entries(extra)) {
    const key = k.toLowerCase();
    if (!TOKEN.test(k)) throw invalidResponse(`header name ${JSON.stringify(k)} is not an HTTP token`);
    if (/[\r\n\0]/.test(String(v))) throw invalidResponse(`header ${JSON.stringify(k)} has a line break or NUL in its value`);
    if (/[^\x00-\xff]/.test(String(v))) throw invalidResponse(`header ${JSON.stringify(k)} is not Latin-1`);
    if (key !== 'content-length' && key !== 'traceparent') headers[key] = String(v); // ours
  }
  if (ctype && !headers['content-type']) headers['content-type'] = ctype;
  return [status, headers, body];
}
const JSON_CT = { 'content-type': 'application/json' };
function parseBody(raw) {
  if (!raw.length) return null;
  try { return JSON.parse(raw.toString('utf8')); } catch (e) {
    throw Object.assign(new Error(`request body is not JSON: ${e.message}`), { badRequest: true });
  }
}

// --- the server --------------------------------------------------------------------------------
function loadFunction(config) {
  const [file, attr] = config.handler.split(':');
  const mod = require(path.resolve(config.source, file));
  const handler = attr ? mod[attr] : (typeof mod === 'function' ? mod : mod.handle);
  if (typeof handler !== 'function') throw new Error(`${config.handler}: no handler function exported`);
  const hook = (n) => (typeof mod[n] === 'function' ? mod[n] : null);
  return { handler, init: hook('init'), liveness: hook('liveness'), readiness: hook('readiness'), shutdown: hook('shutdown') };
}

// One line naming file:line for an error raised while loading the user's code.
function describeLoadError(e, config) {
  const stack = String((e && e.stack) || e);
  if (e instanceof SyntaxError) {
    const where = stack.split('\n')[0]; // "/path/file.js:3" for syntax errors
    return /:\d+$/.test(where) ? `${where}: SyntaxError: ${e.message}` : `SyntaxError: ${e.message}`;
  }
  const source = config ? path.resolve(config.source) : null;
  const frame = stack.split('\n').map((l) => /\(?([^()\s]+:\d+):\d+\)?$/.exec(l.trim()))
    .find((m) => m && (!source || m[1].startsWith(source)));
  const name = (e && e.name) || 'Error';
  return frame ? `${frame[1]}: ${name}: ${e.message}` : `${name}: ${(e && e.message) || e}`;
}

function configFromEnv(env) {
  const name = env.FLOTILLA_FN_NAME || env.K_SERVICE || 'function';
  const signature = env.FLOTILLA_FN_SIGNATURE || 'http';
  if (!['http', 'cloudevent'].includes(signature)) throw new Error('FLOTILLA_FN_SIGNATURE must be http or cloudevent');
  if (signature === 'cloudevent') ceSdk(); // fail at start, not at the first event
  return {
    source: env.FLOTILLA_FN_SOURCE || '.', handler: env.FLOTILLA_FN_HANDLER || 'index.js:handle', signature,
    identity: { name, version: env.FLOTILLA_FN_VERSION || env.K_REVISION || '0',
      instance: env.POD_NAME || env.HOSTNAME || os.hostname() },
    maxBody: Number(env.FLOTILLA_FN_MAX_BODY || 10 * 1024 * 1024),
    accessLog: ['1', 'true', 'yes'].includes((env.FLOTILLA_FN_ACCESS_LOG || '').toLowerCase()),
    timeoutMs: Number(env.FLOTILLA_FN_TIMEOUT || 0) * 1000,
    concurrency: Number(env.FLOTILLA_FN_CONCURRENCY || 0),
    healthTimeoutMs: Number(env.FLOTILLA_FN_HEALTH_TIMEOUT || 1) * 1000,
    headerTimeoutMs: Number(env.FLOTILLA_FN_HEADER_TIMEOUT || 10) * 1000,
    graceMs: Number(env.FLOTILLA_FN_GRACE || 10) * 1000,
  };
}

function createServer(fn, config, exporter) {
  const metrics = new Metrics(config.identity);
  const trigger = config.signature === 'cloudevent' ? 'pubsub' : 'http';
  const state = { ready: false, inFlight: 0, idle: null };
  // The concurrency limit: invocations beyond it wait their turn (Knative containerConcurrency).
  const waiting = []; let running = 0;
  function acquire() {
    if (!config.concurrency || running < config.concurrency) { running++; return Promise.resolve(); }
    return new Promise((resolve) => waiting.push(resolve));
  }
  function release() { const next = waiting.shift(); if (next) next(); else running--; }
  // The per-invocation timeout: the caller gets 504 (the handler's own work cannot be stopped).
  function limited(work) {
    if (!config.timeoutMs) return work;
    let timer;
    const late = new Promise((_, reject) => { timer = setTimeout(() => reject(Object.assign(new Error(`timed out after ${config.timeoutMs / 1000}s`), { timedOut: true })), config.timeoutMs); });
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }

  async function check(hook) {
    let ok = true; let detail = '';
    if (hook) {
      let result;
      let timer;
      const late = new Promise((resolve) => { timer = setTimeout(() => resolve([false, `${hook.name || 'hook'} took longer than ${config.healthTimeoutMs / 1000}s`]), config.healthTimeoutMs); });
      try { result = await Promise.race([Promise.resolve().then(hook), late]); } catch (e) { result = [false, `${e.name}: ${e.message}`]; }
      clearTimeout(timer);
      if (Array.isArray(result)) { ok = Boolean(result[0]); detail = result.length > 1 ? String(result[1]) : ''; }
      else ok = result === undefined || result === null || Boolean(result);
    }
    const doc = { status: ok ? 'ok' : 'failing' }; if (detail) doc.detail = detail;
    return [ok ? 200 : 503, doc];
  }
  function sendJson(res, status, doc) {
    const body = JSON.stringify(doc);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  function readBody(req) {
    return new Promise((resolve, reject) => {
      const chunks = []; let size = 0;
      req.on('data', (c) => { size += c.length; if (size > config.maxBody) { reject(Object.assign(new Error('too large'), { tooLarge: true })); req.pause(); } else chunks.push(c); });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  // One call of the handler per event; a batch is answered with a batch.
  async function invokeEvents(reqHeaders, raw) {
    let received; let mode;
    try { [received, mode] = decodeEvents(reqHeaders, raw); } catch (e) {
      return [400, { ...JSON_CT }, Buffer.from(JSON.stringify({ error: e.message }))];
    }
    const replies = [];
    for (const event of received) {
      const reply = await fn.handler(event);
      if (reply !== null && reply !== undefined) replies.push(reply);
    }
    if (!replies.length) return [204, {}, Buffer.alloc(0)];
    const [h, b] = mode === 'batch' ? encodeBatch(replies) : encodeReply(replies[0]);
    return [200, h, b];
  }

  async function invoke(req, res, url) {
    const span = newSpan(config.identity.name, req.headers.traceparent);
    const started = process.hrtime.bigint();
    state.inFlight++;
    let acquired = false;
    await spanStore.run(span, async () => {
      let status = 500; let headers = { ...JSON_CT }; let body; let error = null;
      try {
        const raw = await readBody(req);
        await acquire(); acquired = true;
        if (config.signature === 'cloudevent') {
          [status, headers, body] = await limited(invokeEvents(req.headers, raw));
        } else {
          const request = {
            method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams),
            headers: req.headers, body: raw, traceId: span.traceId, spanId: span.spanId,
            traceparent: traceparentOf(span), log: makeLogger('function'),
            text() { return raw.toString('utf8'); }, json: () => parseBody(raw),
          };
          [status, headers, body] = encodeResult(await limited(Promise.resolve().then(() => fn.handler(request))));
        }
      } catch (e) {
        if (e && e.tooLarge) { status = 413; headers = { ...JSON_CT }; body = Buffer.from('{"error":"request body too large"}'); }
        else if (e && e.badRequest) { status = 400; headers = { ...JSON_CT }; body = Buffer.from(JSON.stringify({ error: e.message })); }
        else if (e && e.timedOut) {
          error = e.message; runtimeLog.error(`function ${e.message}`);
          status = 504; headers = { ...JSON_CT }; body = Buffer.from(JSON.stringify({ error: `function ${e.message}` }));
        } else if (e && e.invalidResponse) {
          error = `invalid response: ${e.message}`; runtimeLog.error(`function returned an invalid response: ${e.message}`);
          status = 500; headers = { ...JSON_CT }; body = Buffer.from('{"error":"invalid response from the function"}');
        }
        else {
          error = `${(e && e.name) || 'Error'}: ${(e && e.message) || e}`;
          logLine('error', 'flotilla.fn', ['function raised', e]);
          status = 500; headers = { ...JSON_CT }; body = Buffer.from(JSON.stringify({ error: 'internal error', trace_id: span.traceId }));
        }
      }
      headers.traceparent = traceparentOf(span);
      headers['content-length'] = body.length;
      res.writeHead(status, headers);
      res.end(body);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const failed = error !== null || status >= 500;
      const cold = metrics.record(trigger, seconds, failed);
      span.endNs = span.startNs + BigInt(Math.round(seconds * 1e9));
      span.attributes = { 'faas.trigger': trigger, 'faas.invocation_id': span.spanId, 'faas.coldstart': cold,
        'http.request.method': req.method, 'url.path': url.pathname, 'http.response.status_code': status };
      if (failed) span.error = error || `HTTP ${status}`;
      if (exporter && span.sampled) exporter.submit(span);
      if (config.accessLog) runtimeLog.info(`${req.method} ${url.pathname} ${status} ${(seconds * 1e3).toFixed(1)}ms`);
    }).finally(() => {
      if (acquired) release();
      state.inFlight--;
      if (state.inFlight === 0 && state.idle) state.idle();
    });
  }

  const server = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
    const url = new URL(req.url, 'http://function');
    if (url.pathname === HEALTH_LIVE) {
      check(fn.liveness).then(([s, d]) => sendJson(res, s, d));
    } else if (url.pathname === HEALTH_READY) {
      if (!state.ready) sendJson(res, 503, { status: 'failing', detail: 'not started' });
      else check(fn.readiness).then(([s, d]) => sendJson(res, s, d));
    } else if (url.pathname === METRICS) {
      const body = metrics.render();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    } else {
      invoke(req, res, url).catch((e) => { runtimeLog.error(String(e)); if (!res.headersSent) sendJson(res, 500, { error: 'internal error' }); });
    }
  });
  return { server, metrics, state };
}

async function main() {
  const env = process.env;
  let config;
  let fn;
  try {
    config = configFromEnv(env);
    faasName = config.identity.name;
    fn = loadFunction(config);
  } catch (e) {
    process.stderr.write(`cannot load function: ${describeLoadError(e, config)}\n`);
    process.exit(2);
  }
  // User code logging through console gets the same JSON lines as the runtime's own.
  const userLog = makeLogger('function');
  console.log = userLog.info; console.info = userLog.info; console.warn = userLog.warning;
  console.error = userLog.error; console.debug = userLog.debug;
  const exporter = exporterFromEnv(env, config.identity);
  const { server, metrics, state } = createServer(fn, config, exporter);
  if (fn.init) await fn.init();
  server.keepAliveTimeout = 65000;
  // Connections that never finish their headers are closed (slowloris), checked every second.
  server.headersTimeout = config.headerTimeoutMs;
  server.requestTimeout = Math.max(config.headerTimeoutMs, config.timeoutMs) + 60000;
  server.listen(Number(env.PORT || 8080), env.HOST || '0.0.0.0', () => {
    state.ready = true;
    const seconds = (Date.now() - performance.timeOrigin) / 1000;
    metrics.init.observe(Math.max(0, seconds));
    runtimeLog.info(`function ${config.identity.name} ready in ${seconds.toFixed(3)}s (node ${process.version})`);
  });
  // Graceful stop: refuse new connections, let in-flight invocations finish (up to the grace
  // period), run the `shutdown` hook, flush spans with a deadline, exit.
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true; state.ready = false;
    server.close();
    if (server.closeIdleConnections) server.closeIdleConnections();
    const deadline = Date.now() + config.graceMs;
    if (state.inFlight > 0) {
      await new Promise((resolve) => { state.idle = resolve; setTimeout(resolve, config.graceMs).unref(); });
      if (state.inFlight > 0) runtimeLog.warning(`${state.inFlight} invocations still running after ${config.graceMs / 1000}s; stopping`);
    }
    if (server.closeIdleConnections) server.closeIdleConnections();
    if (fn.shutdown) {
      const left = Math.max(1000, deadline - Date.now());
      try {
        await Promise.race([Promise.resolve().then(fn.shutdown), new Promise((_, r) => setTimeout(() => r(new Error(`took longer than ${left / 1000}s`)), left).unref())]);
      } catch (e) { logLine('error', 'flotilla.fn', ['the shutdown hook failed', e]); }
    }
    if (exporter) await exporter.shutdown(3000);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // A rejection nobody awaited (a handler's fire-and-forget call) is logged, not fatal.
  process.on('unhandledRejection', (e) => logLine('error', 'flotilla.fn', ['unhandled rejection', e]));
}

module.exports = { Response, CloudEvent, parseTraceparent, decodeEvents, encodeReply, encodeBatch, Metrics, createServer };
if (require.main === module) main();
