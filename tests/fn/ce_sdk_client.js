'use strict';
// The Node half of the CloudEvents suite: encodes test events and decodes replies with the
// official `cloudevents` npm package. stdin: {"op": "encode", "cases": [...]} or
// {"op": "decode", "messages": [...]}; stdout: the JSON list of results.
const { CloudEvent, HTTP } = require('cloudevents');

const SAFE = (b) => b > 0x20 && b < 0x7f && b !== 0x22 && b !== 0x25;
const pct = (v) => Array.from(Buffer.from(String(v), 'utf8'))
  .map((b) => (SAFE(b) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');

function eventOf(c) {
  const attrs = { ...c.attrs };
  if (c.data && 'json' in c.data) attrs.data = c.data.json;
  else if (c.data && 'base64' in c.data) attrs.data = Buffer.from(c.data.base64, 'base64');
  else if (c.data && 'text' in c.data) attrs.data = c.data.text;
  return new CloudEvent(attrs, false);
}
function message(headers, body) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = k.toLowerCase().startsWith('ce-') ? pct(v) : String(v);
  const buf = Buffer.isBuffer(body) || ArrayBuffer.isView(body) ? Buffer.from(body) : Buffer.from(body === undefined ? '' : String(body));
  return { headers: out, body_base64: buf.toString('base64') };
}
function encode(c) {
  if (c.mode === 'batch') {
    const items = c.events.map((e) => JSON.parse(HTTP.structured(eventOf(e)).body));
    return message({ 'content-type': 'application/cloudevents-batch+json' }, JSON.stringify(items));
  }
  const m = c.mode === 'structured' ? HTTP.structured(eventOf(c)) : HTTP.binary(eventOf(c));
  return message(m.headers, m.body);
}
function view(ev) {
  const out = { attrs: {} };
  for (const [k, v] of Object.entries(ev)) if (k !== 'data' && k !== 'data_base64' && v !== undefined) out.attrs[k] = String(v);
  const d = ev.data;
  if (d === undefined || d === null) out.data = null;
  else if (Buffer.isBuffer(d) || ArrayBuffer.isView(d)) out.data = { base64: Buffer.from(d).toString('base64') };
  else if (typeof d === 'string') out.data = { text: d };
  else out.data = { json: d };
  return out;
}
function decode(m) {
  const headers = {};
  for (const [k, v] of Object.entries(m.headers)) headers[k] = k.startsWith('ce-') ? decodeURIComponent(v) : v;
  const body = Buffer.from(m.body_base64, 'base64');
  const ct = (headers['content-type'] || '').split(';')[0];
  const parsed = HTTP.toEvent({ headers, body: ct.includes('cloudevents') ? body.toString('utf8') : body });
  return Array.isArray(parsed) ? parsed.map(view) : [view(parsed)];
}

let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  const out = req.op === 'encode' ? req.cases.map(encode) : req.messages.map(decode);
  process.stdout.write(JSON.stringify(out));
});
