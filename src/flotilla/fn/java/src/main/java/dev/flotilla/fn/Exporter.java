package dev.flotilla.fn;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * OTLP/HTTP JSON span export, batched on one daemon thread: one export at a time (a collector
 * that never answers costs one connection, abandoned after OTEL_EXPORTER_OTLP_TIMEOUT), a full
 * queue (2048) drops spans rather than slowing invocations, failures are logged, never fatal.
 */
final class Exporter {
    private static final int MAX_QUEUE = 2048;
    private static final int MAX_BATCH = 512;

    private final URI endpoint;
    private final List<Map<String, Object>> resource;
    private final Map<String, String> headers;
    private final long delayMs;
    private final int timeoutMs;
    private final ArrayDeque<Span> queue = new ArrayDeque<>();
    private final Thread worker;
    private volatile boolean stopping;
    private long dropped;

    private Exporter(URI endpoint, Map<String, Object> resource, Map<String, String> headers, long delayMs, int timeoutMs) {
        this.endpoint = endpoint;
        this.resource = attributes(resource);
        this.headers = headers;
        this.delayMs = Math.max(1, delayMs);
        this.timeoutMs = Math.max(1, timeoutMs);
        this.worker = new Thread(this::loop, "flotilla-otlp");
        this.worker.setDaemon(true);
        this.worker.start();
    }

    static Exporter fromEnv(Map<String, String> env, String name, String version, String instance) {
        if ("true".equalsIgnoreCase(env.getOrDefault("OTEL_SDK_DISABLED", ""))
                || "none".equalsIgnoreCase(env.getOrDefault("OTEL_TRACES_EXPORTER", "otlp"))) {
            return null;
        }
        String endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        if ((endpoint == null || endpoint.isEmpty()) && env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != null) {
            endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").replaceAll("/+$", "") + "/v1/traces";
        }
        if (endpoint == null || endpoint.isEmpty()) {
            return null;
        }
        Map<String, Object> resource = new LinkedHashMap<>(parseKv(env.get("OTEL_RESOURCE_ATTRIBUTES")));
        resource.put("service.name", env.getOrDefault("OTEL_SERVICE_NAME", name));
        resource.put("faas.name", name);
        resource.put("faas.version", version);
        resource.put("faas.instance", instance);
        resource.put("telemetry.sdk.name", "flotilla-fn");
        resource.put("telemetry.sdk.language", "java");
        String h = env.getOrDefault("OTEL_EXPORTER_OTLP_TRACES_HEADERS", env.get("OTEL_EXPORTER_OTLP_HEADERS"));
        long delay = parseLong(env.get("OTEL_BSP_SCHEDULE_DELAY"), 1000);
        long timeout = parseLong(env.getOrDefault("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", env.get("OTEL_EXPORTER_OTLP_TIMEOUT")), 10000);
        return new Exporter(URI.create(endpoint), resource, parseKv(h), delay, (int) Math.min(timeout, Integer.MAX_VALUE));
    }

    static long parseLong(String value, long fallback) {
        try {
            return value == null || value.isBlank() ? fallback : (long) Double.parseDouble(value.trim());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    static Map<String, String> parseKv(String value) {
        Map<String, String> out = new LinkedHashMap<>();
        if (value == null) return out;
        for (String item : value.split(",")) {
            int i = item.indexOf('=');
            if (i > 0) {
                out.put(item.substring(0, i).trim(), URLDecoder.decode(item.substring(i + 1).trim(), StandardCharsets.UTF_8));
            }
        }
        return out;
    }

    synchronized void submit(Span span) {
        if (queue.size() >= MAX_QUEUE) {
            dropped++;
        } else {
            queue.add(span);
        }
    }

    private synchronized List<Span> take() {
        List<Span> batch = new ArrayList<>();
        while (!queue.isEmpty() && batch.size() < MAX_BATCH) batch.add(queue.poll());
        return batch;
    }

    private synchronized boolean empty() { return queue.isEmpty(); }

    private void loop() {
        while (!stopping) {
            try {
                Thread.sleep(delayMs);
            } catch (InterruptedException e) {
                // woken for the final flush
            }
            exportAll();
        }
    }

    private void exportAll() {
        List<Span> batch;
        while (!(batch = take()).isEmpty()) {
            if (!post(batch)) return;
        }
    }

    private boolean post(List<Span> batch) {
        List<Map<String, Object>> spans = new ArrayList<>();
        for (Span s : batch) spans.add(otlp(s));
        Map<String, Object> doc = Map.of("resourceSpans", List.of(Map.of(
                "resource", Map.of("attributes", resource),
                "scopeSpans", List.of(Map.of("scope", Map.of("name", "flotilla.fn"), "spans", spans)))));
        byte[] body = Json.bytes(doc);
        HttpURLConnection conn = null;
        try {
            conn = (HttpURLConnection) endpoint.toURL().openConnection();
            conn.setConnectTimeout(timeoutMs);
            conn.setReadTimeout(timeoutMs);
            conn.setRequestMethod("POST");
            conn.setDoOutput(true);
            conn.setFixedLengthStreamingMode(body.length);
            conn.setRequestProperty("content-type", "application/json");
            headers.forEach(conn::setRequestProperty);
            try (OutputStream out = conn.getOutputStream()) {
                out.write(body);
            }
            int status = conn.getResponseCode();
            try (InputStream in = status < 400 ? conn.getInputStream() : conn.getErrorStream()) {
                if (in != null) in.readAllBytes();
            }
            if (status >= 300) {
                JsonLog.warning("OTLP export of " + batch.size() + " spans to " + endpoint + " failed: HTTP " + status);
            }
            return true;
        } catch (Exception e) {
            JsonLog.warning("OTLP export of " + batch.size() + " spans to " + endpoint + " failed: " + e);
            if (conn != null) conn.disconnect();
            return false;
        }
    }

    private static List<Map<String, Object>> attributes(Map<String, Object> attrs) {
        List<Map<String, Object>> out = new ArrayList<>();
        attrs.forEach((k, v) -> out.add(Map.of("key", k, "value", value(v))));
        return out;
    }

    private static Map<String, Object> value(Object v) {
        if (v instanceof Boolean) return Map.of("boolValue", v);
        if (v instanceof Integer || v instanceof Long) return Map.of("intValue", String.valueOf(v));
        if (v instanceof Number) return Map.of("doubleValue", v);
        return Map.of("stringValue", String.valueOf(v));
    }

    private static Map<String, Object> otlp(Span s) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("traceId", s.traceId);
        out.put("spanId", s.spanId);
        if (!s.parentId.isEmpty()) out.put("parentSpanId", s.parentId);
        out.put("name", s.name);
        out.put("kind", 2);
        out.put("startTimeUnixNano", Long.toString(s.startNanos));
        out.put("endTimeUnixNano", Long.toString(s.endNanos));
        out.put("attributes", attributes(s.attributes));
        out.put("status", s.error == null ? Map.of("code", 0) : Map.of("code", 2, "message", s.error));
        return out;
    }

    /** Flush what is queued, for at most {@code deadlineMs}: the pod's grace period is finite. */
    void shutdown(long deadlineMs) {
        stopping = true;
        worker.interrupt();
        try {
            worker.join(deadlineMs);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (worker.isAlive() || !empty()) {
            JsonLog.warning("spans not exported within " + deadlineMs / 1000.0 + "s of stopping; dropped");
        }
    }
}
