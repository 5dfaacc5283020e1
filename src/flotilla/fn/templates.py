"""Starter projects for ``fn init``: a function, its test and ``function.yaml``. Pure."""

from __future__ import annotations

import json

from .model import FunctionSpec, Runtime, Signature, dump_spec

__all__ = ["TEMPLATES", "project_files"]

TEMPLATES = ("http", "cloudevents")

_PY_HTTP = '''"""The function: ``handle`` gets a Request and returns the response body.

Return a str, bytes, a JSON-able value, None (204) or ``Response(body, status, headers)``.
``async def handle`` works too; plain functions run in a worker thread.
"""

import logging

from flotilla.fn.runtime import Request

log = logging.getLogger(__name__)


def handle(request: Request) -> dict[str, str]:
    name = request.query.get("name", "world")
    log.info("greeting %s", name)  # a JSON line carrying this invocation's trace and span ids
    return {"message": f"Hello, {name}!"}


def readiness() -> bool:
    """Optional hook behind /health/readiness: False (or raising) takes the instance out."""
    return True
'''

_PY_HTTP_TEST = """from flotilla.fn.runtime import Request

from func import handle


def test_greets_by_name() -> None:
    assert handle(Request("GET", "/", query="name=fleet")) == {"message": "Hello, fleet!"}


def test_greets_the_world_by_default() -> None:
    assert handle(Request("GET", "/")) == {"message": "Hello, world!"}
"""

_PY_CE = '''"""The function: ``handle`` gets a CloudEvent and may answer with another one."""

import logging

from flotilla.fn.runtime import CloudEvent

log = logging.getLogger(__name__)


def handle(event: CloudEvent) -> CloudEvent | None:
    log.info("received %s from %s", event.type, event.source)
    return CloudEvent(type="dev.flotilla.{name}.reply", source="/functions/{name}",
                      data={{"received": event.data}})
'''

_PY_CE_TEST = """from flotilla.fn.runtime import CloudEvent

from func import handle


def test_replies_with_the_data_it_received() -> None:
    reply = handle(CloudEvent(type="dev.example.ping", source="/test", data={{"n": 1}}))
    assert reply is not None
    assert reply.type == "dev.flotilla.{name}.reply"
    assert reply.data == {{"received": {{"n": 1}}}}
"""

_JS_HTTP = """'use strict';
// The function: `handle` gets a request and returns the response body.
// Return a string, a Buffer, a JSON-able value, null (204) or
// `new Response(body, { status, headers })` from require('flotilla-fn').

exports.handle = async (request) => {
  const name = request.query.name || 'world';
  console.log(`greeting ${name}`); // a JSON line carrying this invocation's trace and span ids
  return { message: `Hello, ${name}!` };
};

// Optional hook behind /health/readiness: false (or throwing) takes the instance out.
exports.readiness = async () => true;
"""

_JS_HTTP_TEST = """'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { handle } = require('../index.js');

test('greets by name', async () => {
  assert.deepStrictEqual(await handle({ query: { name: 'fleet' } }), { message: 'Hello, fleet!' });
});

test('greets the world by default', async () => {
  assert.deepStrictEqual(await handle({ query: {} }), { message: 'Hello, world!' });
});
"""

_JS_CE = """'use strict';
// The function: `handle` gets a CloudEvent and may answer with another one.
const { CloudEvent } = require('flotilla-fn');

exports.handle = async (event) => {
  console.log(`received ${event.type} from ${event.source}`);
  return new CloudEvent({ type: 'dev.flotilla.__NAME__.reply', source: '/functions/__NAME__',
    data: { received: event.data } });
};
"""

_JS_CE_TEST = """'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { CloudEvent } = require('flotilla-fn');
const { handle } = require('../index.js');

test('replies with the data it received', async () => {
  const ping = new CloudEvent({ type: 'dev.example.ping', source: '/test', data: { n: 1 } });
  const reply = await handle(ping);
  assert.strictEqual(reply.type, 'dev.flotilla.__NAME__.reply');
  assert.deepStrictEqual(reply.data, { received: { n: 1 } });
});
"""

_GITIGNORE = "__pycache__/\n.pytest_cache/\n.flotilla-build/\n"


def _fill(template: str, name: str) -> str:
    # Python templates use str.format escaping; JS ones a __NAME__ placeholder (JS has ${}).
    return template.replace("__NAME__", name)


def project_files(spec: FunctionSpec, template: str) -> dict[str, str]:
    """The files of a new project, relative path to text."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r} (expected one of {', '.join(TEMPLATES)})")
    files = {"function.yaml": dump_spec(spec), ".gitignore": _GITIGNORE}
    events = template == "cloudevents"
    if spec.runtime is Runtime.PYTHON:
        if events:
            files["func.py"] = _PY_CE.format(name=spec.name)
            files["test_func.py"] = _PY_CE_TEST.format(name=spec.name)
        else:
            files["func.py"] = _PY_HTTP
            files["test_func.py"] = _PY_HTTP_TEST
    else:
        files["index.js"] = _fill(_JS_CE if events else _JS_HTTP, spec.name)
        files["test/index.test.js"] = _fill(_JS_CE_TEST if events else _JS_HTTP_TEST, spec.name)
        files["package.json"] = (
            json.dumps(
                {
                    "name": spec.name,
                    "version": "0.1.0",
                    "private": True,
                    "main": "index.js",
                    "scripts": {"test": "node --test"},
                },
                indent=2,
            )
            + "\n"
        )
    return files


def signature_for(template: str) -> Signature:
    """The ``function.yaml`` signature a template implies."""
    return Signature.CLOUDEVENT if template == "cloudevents" else Signature.HTTP
