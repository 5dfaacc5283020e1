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


_JAVA_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Built by flotilla (fn run / fn build) with Maven; every plugin and dependency is pinned. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>function</groupId>
  <artifactId>__NAME__</artifactId>
  <version>0.1.0</version>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
    <!-- flotilla builds into its own cache; plain `mvn` builds into target/ -->
    <flotilla.buildDir>${project.basedir}/target</flotilla.buildDir>
  </properties>
  <dependencies>
    <!-- The runtime (and the CloudEvents Java SDK, Jackson) is provided by flotilla. -->
    <dependency>
      <groupId>dev.flotilla</groupId>
      <artifactId>flotilla-fn</artifactId>
      <version>1.0.0</version>
      <scope>provided</scope>
    </dependency>
    <dependency>
      <groupId>org.junit.jupiter</groupId>
      <artifactId>junit-jupiter</artifactId>
      <version>5.10.2</version>
      <scope>test</scope>
    </dependency>
  </dependencies>
  <build>
    <directory>${flotilla.buildDir}</directory>
    <pluginManagement>
      <plugins>
        <plugin><artifactId>maven-resources-plugin</artifactId><version>3.3.1</version></plugin>
        <plugin><artifactId>maven-compiler-plugin</artifactId><version>3.13.0</version></plugin>
        <plugin><artifactId>maven-surefire-plugin</artifactId><version>3.2.5</version></plugin>
        <plugin><artifactId>maven-jar-plugin</artifactId><version>3.4.1</version></plugin>
        <plugin><artifactId>maven-dependency-plugin</artifactId><version>3.6.1</version></plugin>
      </plugins>
    </pluginManagement>
    <plugins>
      <plugin>
        <!-- The function's own runtime dependencies, next to its classes. -->
        <artifactId>maven-dependency-plugin</artifactId>
        <executions>
          <execution>
            <id>function-libs</id>
            <phase>package</phase>
            <goals><goal>copy-dependencies</goal></goals>
            <configuration>
              <outputDirectory>${project.build.directory}/lib</outputDirectory>
              <includeScope>runtime</includeScope>
            </configuration>
          </execution>
        </executions>
      </plugin>
    </plugins>
  </build>
</project>
"""

_JAVA_HTTP = """package function;

import dev.flotilla.fn.Request;
import java.util.Map;

/**
 * The function: {@code handle} gets a Request and returns the response body.
 *
 * <p>Return a String, a byte[], a JSON-able value (Jackson), null (204) or
 * {@code new Response(body, status, headers)}. Invocations run on their own threads.
 */
public class Function {
    public Map<String, String> handle(Request request) {
        String name = request.query().getOrDefault("name", "world");
        // a JSON line carrying this invocation's trace and span ids
        request.log().info("greeting " + name);
        return Map.of("message", "Hello, " + name + "!");
    }

    /** Optional hook behind /health/readiness: false (or throwing) takes the instance out. */
    public boolean readiness() {
        return true;
    }
}
"""

_JAVA_HTTP_TEST = """package function;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.flotilla.fn.Request;
import java.util.Map;
import org.junit.jupiter.api.Test;

class FunctionTest {
    @Test
    void greetsByName() {
        Request request = Request.of("GET", "/", Map.of("name", "fleet"), new byte[0]);
        assertEquals(Map.of("message", "Hello, fleet!"), new Function().handle(request));
    }

    @Test
    void greetsTheWorldByDefault() {
        Request request = Request.of("GET", "/", Map.of(), new byte[0]);
        assertEquals(Map.of("message", "Hello, world!"), new Function().handle(request));
    }
}
"""

_JAVA_CE = """package function;

import dev.flotilla.fn.Event;
import dev.flotilla.fn.Reply;
import java.util.Collections;
import java.util.logging.Logger;

/**
 * The function: {@code handle} gets a CloudEvent and may answer with another one (null: 204).
 *
 * <p>{@code event.data()} is typed by its datacontenttype: a Jackson JsonNode for JSON, a String
 * for text, byte[] otherwise. {@code event.cloudEvent()} is the CloudEvents Java SDK's event.
 */
public class Function {
    private static final Logger LOG = Logger.getLogger("function");

    public Reply handle(Event event) {
        LOG.info("received " + event.type() + " from " + event.source());
        return Reply.of("dev.flotilla.__NAME__.reply", "/functions/__NAME__")
                .data(Collections.singletonMap("received", event.data()));
    }
}
"""

_JAVA_CE_TEST = """package function;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.flotilla.fn.Event;
import dev.flotilla.fn.Reply;
import io.cloudevents.core.builder.CloudEventBuilder;
import java.net.URI;
import java.util.Map;
import org.junit.jupiter.api.Test;

class FunctionTest {
    @Test
    void repliesWithTheDataItReceived() {
        var ping = CloudEventBuilder.v1().withId("1").withType("dev.example.ping")
                .withSource(URI.create("/test")).build();
        Reply reply = new Function().handle(Event.of(ping, Map.of("n", 1)));
        assertEquals("dev.flotilla.__NAME__.reply", reply.type());
        assertEquals(Map.of("received", Map.of("n", 1)), reply.data());
    }
}
"""

_GITIGNORE = "__pycache__/\n.pytest_cache/\n.flotilla-build/\n"
_JAVA_GITIGNORE = "target/\n"


def _fill(template: str, name: str) -> str:
    # Python templates use str.format escaping; JS and Java ones a __NAME__ placeholder.
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
    elif spec.runtime is Runtime.JAVA:
        files[".gitignore"] = _JAVA_GITIGNORE
        files["pom.xml"] = _fill(_JAVA_POM, spec.name)
        main = _JAVA_CE if events else _JAVA_HTTP
        test = _JAVA_CE_TEST if events else _JAVA_HTTP_TEST
        files["src/main/java/function/Function.java"] = _fill(main, spec.name)
        files["src/test/java/function/FunctionTest.java"] = _fill(test, spec.name)
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
