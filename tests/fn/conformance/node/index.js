'use strict';
// The conformance function (Node): one path per clause of the runtime contract.
const { Response } = require('flotilla-fn');

const state = { ready: true };

exports.handle = async (request) => {
  if (request.path === '/fail') throw new Error('boom');
  if (request.path === '/teapot') return new Response('short and stout', { status: 418, headers: { 'X-Custom': 'yes', 'Content-Length': '999' } });
  if (request.path === '/toggle-ready') { state.ready = !state.ready; return null; }
  if (request.path === '/echo') {
    console.log(`echo ${request.text()}`);
    return { method: request.method, query: request.query, body: request.text(),
      trace_id: request.traceId, span_id: request.spanId, traceparent: request.traceparent };
  }
  return 'hello';
};

exports.readiness = () => (state.ready ? true : [false, 'toggled off']);
exports.liveness = () => true;
