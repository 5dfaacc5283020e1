package dev.flotilla.fn;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.logging.Logger;

/** One HTTP invocation as a function sees it: the same fields as the Python and Node runtimes. */
public final class Request {
    private final String method;
    private final String path;
    private final Map<String, String> query;
    private final Map<String, String> headers;
    private final byte[] body;
    private final String traceId;
    private final String spanId;
    private final String traceparent;

    public Request(String method, String path, Map<String, String> query, Map<String, String> headers,
            byte[] body, String traceId, String spanId, String traceparent) {
        this.method = method;
        this.path = path;
        this.query = Map.copyOf(query);
        this.headers = Map.copyOf(headers);
        this.body = body;
        this.traceId = traceId;
        this.spanId = spanId;
        this.traceparent = traceparent;
    }

    /** A request for a function's own unit tests (no trace). */
    public static Request of(String method, String path, Map<String, String> query, byte[] body) {
        return new Request(method, path, query, Map.of(), body, "", "", "");
    }

    public String method() { return method; }
    public String path() { return path; }
    /** Query parameters; the first value of a repeated name. */
    public Map<String, String> query() { return query; }
    /** Headers with lower-case names; repeated headers joined with ", ". */
    public Map<String, String> headers() { return headers; }
    public byte[] body() { return body.clone(); }
    public String text() { return new String(body, StandardCharsets.UTF_8); }

    /** The body parsed as JSON; a body that is not JSON is the caller's error (400). */
    public JsonNode json() {
        if (body.length == 0) {
            return null;
        }
        try {
            return Json.MAPPER.readTree(body);
        } catch (Exception e) {
            throw new BadRequestException("request body is not JSON: " + Json.firstLine(e.getMessage()));
        }
    }

    public String traceId() { return traceId; }
    public String spanId() { return spanId; }
    /** The W3C traceparent of this invocation's span: send it on outgoing calls. */
    public String traceparent() { return traceparent; }
    /** A logger whose lines carry this invocation's trace and span ids. */
    public Logger log() { return Logger.getLogger("function"); }
}
