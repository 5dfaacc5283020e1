package conformance;

import dev.flotilla.fn.Health;
import dev.flotilla.fn.Request;
import dev.flotilla.fn.Response;
import java.util.LinkedHashMap;
import java.util.Map;

/** The conformance function (Java): one path per clause of the runtime contract. */
public class Function {
    private static volatile boolean ready = true;

    public Object handle(Request request) {
        switch (request.path()) {
            case "/fail":
                throw new IllegalStateException("boom");
            case "/teapot":
                return new Response("short and stout", 418, Map.of("X-Custom", "yes", "Content-Length", "999"));
            case "/toggle-ready":
                ready = !ready;
                return null;
            case "/echo": {
                request.log().info("echo " + request.text());
                Map<String, Object> doc = new LinkedHashMap<>();
                doc.put("method", request.method());
                doc.put("query", request.query());
                doc.put("body", request.text());
                doc.put("trace_id", request.traceId());
                doc.put("span_id", request.spanId());
                doc.put("traceparent", request.traceparent());
                return doc;
            }
            default:
                return "hello";
        }
    }

    public Health readiness() {
        return ready ? Health.ok() : Health.failing("toggled off");
    }

    public boolean liveness() {
        return true;
    }
}
