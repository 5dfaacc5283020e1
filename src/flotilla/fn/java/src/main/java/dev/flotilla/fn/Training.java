package dev.flotilla.fn;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The training run behind the class-data archive ({@code java -XX:ArchiveClassesAtExit=… Main
 * --train}): the runtime serves this built-in function on a loopback port and sends itself the
 * requests every function's first seconds are made of (probes, /metrics, JSON and text
 * invocations, an error, a span exported to itself, CloudEvents in and out), so the classes those
 * need (the JDK server, Jackson, the CloudEvents SDK, lambda proxies) are in the archive. It runs
 * no user code: one archive per runtime build serves every function, whose own classes follow the
 * runtime's on the class path.
 */
public final class Training {
    public Object handle(Request request) {
        request.log().info("training " + request.path());
        return switch (request.path()) {
            case "/text" -> "hello";
            case "/bytes" -> request.body();
            case "/v1/traces", "/none" -> null;
            case "/fail" -> throw new IllegalStateException("a failing invocation");
            case "/status" -> new Response("teapot", 418, Map.of("x-training", "1"));
            default -> {
                Map<String, Object> doc = new LinkedHashMap<>();
                doc.put("message", "hello");
                doc.put("query", request.query());
                doc.put("json", request.body().length > 0 ? request.json() : null);
                yield doc;
            }
        };
    }

    public boolean readiness() {
        return true;
    }

    public boolean liveness() {
        return true;
    }

    /** The environment of the training run: this function, a free loopback port, spans to itself. */
    static Map<String, String> env(Map<String, String> base) throws IOException {
        int port;
        try (ServerSocket probe = new ServerSocket(0)) {
            port = probe.getLocalPort();
        }
        Map<String, String> env = new HashMap<>(base);
        env.keySet().removeIf(k -> k.startsWith("OTEL_") || k.startsWith("FLOTILLA_FN_") || k.startsWith("K_"));
        env.put("HOST", "127.0.0.1");
        env.put("PORT", Integer.toString(port));
        env.put("FLOTILLA_FN_NAME", "training");
        env.put("FLOTILLA_FN_HANDLER", Training.class.getName() + ":handle");
        env.put("FLOTILLA_FN_ACCESS_LOG", "true");
        env.put("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:" + port);
        env.put("OTEL_BSP_SCHEDULE_DELAY", "20");
        return env;
    }

    /** Sends the requests (keep-alive, as a probe or a load balancer would), then CloudEvents. */
    static void drive(int port) throws IOException, InterruptedException {
        String json = "{\"a\":[1,2.5,\"x\",true,null]}";
        try (Socket socket = new Socket("127.0.0.1", port)) {
            socket.setSoTimeout(10_000);
            for (int round = 0; round < 3; round++) {
                exchange(socket, "GET /health/readiness HTTP/1.1", "");
                exchange(socket, "GET /health/liveness HTTP/1.1", "");
                exchange(socket, "GET /?name=x&y=%20z HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "");
                exchange(socket, "POST /json HTTP/1.1\r\ncontent-type: application/json", json);
                exchange(socket, "POST /text HTTP/1.1", "hi");
                exchange(socket, "POST /bytes HTTP/1.1\r\ncontent-type: application/octet-stream", "raw");
                exchange(socket, "GET /none HTTP/1.1", "");
                exchange(socket, "GET /status HTTP/1.1", "");
                exchange(socket, "GET /fail HTTP/1.1", "");
                exchange(socket, "GET /metrics HTTP/1.1", "");
            }
        }
        Thread.sleep(200); // the exporter's batches go out (to this server, as /v1/traces)
        events(json);
    }

    private static void events(String json) {
        Map<String, String> binary = new LinkedHashMap<>();
        binary.put("content-type", "application/json");
        binary.put("ce-id", "1");
        binary.put("ce-source", "/training");
        binary.put("ce-type", "dev.flotilla.training");
        binary.put("ce-specversion", "1.0");
        binary.put("ce-time", "2024-01-02T03:04:05Z");
        binary.put("ce-extension", "a%20b");
        byte[] data = json.getBytes(StandardCharsets.UTF_8);
        for (Event e : Events.decode(binary, data).events()) {
            Events.encode(e.cloudEvent());
            Events.encode(Reply.of("dev.flotilla.reply", "/training").data(e.data()));
            Events.encode(Reply.of("dev.flotilla.reply", "/training").data("text").dataContentType("text/plain").structured(true));
        }
        String structured = "{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"/t\",\"type\":\"t\",\"data_base64\":\"aGk=\"}";
        Map<String, String> headers = Map.of("content-type", "application/cloudevents+json");
        List<Object> replies = List.of(Reply.of("t", "/t").data(new byte[] {1}), Reply.of("t", "/t"));
        for (Event e : Events.decode(headers, structured.getBytes(StandardCharsets.UTF_8)).events()) {
            Events.encode(Reply.of("t", "/t").data(e.data()).structured(true));
        }
        Map<String, String> batch = Map.of("content-type", Events.BATCH);
        Events.decode(batch, ("[" + structured + "]").getBytes(StandardCharsets.UTF_8));
        Events.encodeBatch(replies);
        try {
            Events.decode(Map.of("content-type", "text/plain"), data);
        } catch (BadRequestException expected) {
            // the 400 path is part of a function's first minutes too
        }
    }

    private static void exchange(Socket socket, String head, String body) throws IOException {
        byte[] payload = body.getBytes(StandardCharsets.UTF_8);
        String request = head + "\r\nhost: training\r\ncontent-length: " + payload.length + "\r\n\r\n";
        OutputStream out = socket.getOutputStream();
        out.write(request.getBytes(StandardCharsets.ISO_8859_1));
        out.write(payload);
        out.flush();
        InputStream in = socket.getInputStream();
        ByteArrayOutputStream headers = new ByteArrayOutputStream();
        while (!headers.toString(StandardCharsets.ISO_8859_1).endsWith("\r\n\r\n")) {
            int b = in.read();
            if (b < 0) throw new IOException("the runtime closed the connection during training");
            headers.write(b);
        }
        long length = 0;
        for (String line : headers.toString(StandardCharsets.ISO_8859_1).split("\r\n")) {
            if (line.toLowerCase().startsWith("content-length:")) length = Long.parseLong(line.substring(15).trim());
        }
        in.readNBytes((int) length);
    }
}
