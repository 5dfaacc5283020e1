'use strict';
// Slow, hostile and well-behaved paths for the lifecycle suite (tests/fn/test_lifecycle.py).
const fs = require('fs');
const { Response } = require('flotilla-fn');

exports.handle = async (request) => {
  switch (request.path) {
    case '/slow': await new Promise((r) => setTimeout(r, Number(request.query.s || 1) * 1000)); return 'slept';
    case '/json': return { got: request.json() };
    case '/bad-status': return new Response('x', { status: 1000 });
    case '/bad-header': return new Response('x', { headers: { 'x-bad': 'a\r\nb' } });
    default: return 'ok';
  }
};
exports.liveness = () => true;
exports.readiness = () => true;
exports.shutdown = () => {
  if (process.env.LIFECYCLE_MARKER) fs.writeFileSync(process.env.LIFECYCLE_MARKER, 'stopped');
};
