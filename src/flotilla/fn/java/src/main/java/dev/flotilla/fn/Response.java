package dev.flotilla.fn;

import java.util.LinkedHashMap;
import java.util.Map;

/** An explicit response: a body (as a handler may return it), a status and extra headers. */
public final class Response {
    private final Object body;
    private final int status;
    private final Map<String, String> headers;

    public Response(Object body, int status, Map<String, String> headers) {
        this.body = body;
        this.status = status;
        this.headers = new LinkedHashMap<>(headers == null ? Map.of() : headers);
    }

    public Response(Object body, int status) { this(body, status, Map.of()); }

    public Object body() { return body; }
    public int status() { return status; }
    public Map<String, String> headers() { return headers; }
}
