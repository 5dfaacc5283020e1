package dev.flotilla.fn;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.cloudevents.CloudEvent;
import io.cloudevents.SpecVersion;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.core.format.EventFormat;
import io.cloudevents.http.HttpMessageFactory;
import io.cloudevents.jackson.JsonFormat;
import java.io.ByteArrayOutputStream;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * CloudEvents over HTTP through the CloudEvents Java SDK (cloudevents-http-basic, cloudevents-json-
 * jackson). Added here, as in the Python and Node runtimes: percent-decoding of ce- headers (and
 * encoding on replies), a strict RFC 3339 {@code time}, CloudEvents 1.0 only, batch mode, and data
 * typed by its content type.
 */
final class Events {
    static final String STRUCTURED = "application/cloudevents+json";
    static final String BATCH = "application/cloudevents-batch+json";
    private static final Pattern BASE64 = Pattern.compile("^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$");
    private static final Pattern RFC3339 = Pattern.compile("^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$");
    private static final Set<String> KNOWN = Set.of("id", "source", "type", "specversion", "datacontenttype",
            "subject", "time", "dataschema", "data", "data_base64");
    private static final EventFormat FORMAT = new JsonFormat();

    /** The events of one request and the mode they came in. */
    record Received(List<Event> events, String mode) {}

    private Events() {}

    static String mediaType(String contentType) {
        if (contentType == null) return "";
        int i = contentType.indexOf(';');
        return (i < 0 ? contentType : contentType.substring(0, i)).trim().toLowerCase();
    }

    static boolean isJson(String contentType) {
        String t = mediaType(contentType);
        return t.equals("application/json") || t.endsWith("+json") || t.equals("text/json");
    }

    static Object typedData(byte[] raw, String contentType) {
        if (raw == null || raw.length == 0) return null;
        if (isJson(contentType)) {
            try {
                return Json.MAPPER.readTree(raw);
            } catch (Exception e) {
                throw new BadRequestException("CloudEvent data is not JSON: " + Json.firstLine(e.getMessage()));
            }
        }
        if (mediaType(contentType).startsWith("text/")) return new String(raw, StandardCharsets.UTF_8);
        return raw;
    }

    static String percentDecode(String value) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] in = value.getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < in.length; i++) {
            if (in[i] == '%') {
                if (i + 2 >= in.length || Character.digit(in[i + 1], 16) < 0 || Character.digit(in[i + 2], 16) < 0) {
                    throw new BadRequestException("header value '" + value + "' is not percent-encoded UTF-8");
                }
                out.write(Character.digit(in[i + 1], 16) * 16 + Character.digit(in[i + 2], 16));
                i += 2;
            } else {
                out.write(in[i]);
            }
        }
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(out.toByteArray())).toString();
        } catch (CharacterCodingException e) {
            throw new BadRequestException("header value '" + value + "' is not percent-encoded UTF-8");
        }
    }

    static String percentEncode(String value) {
        StringBuilder out = new StringBuilder();
        for (byte b : value.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if (c > 0x20 && c < 0x7f && c != '"' && c != '%') {
                out.append((char) c);
            } else {
                out.append('%').append(String.format("%02X", c));
            }
        }
        return out.toString();
    }

    private static void checkTime(String time) {
        if (time != null && !RFC3339.matcher(time).matches()) {
            throw new BadRequestException("CloudEvent time '" + time + "' is not an RFC 3339 timestamp");
        }
    }

    private static void checkSpecVersion(String specversion) {
        if (!"1.0".equals(specversion)) {
            throw new BadRequestException("unsupported CloudEvents specversion '" + specversion + "'");
        }
    }

    private static Map<String, String> extensions(CloudEvent ev) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String name : ev.getExtensionNames()) {
            if (!KNOWN.contains(name) && ev.getExtension(name) != null) out.put(name, String.valueOf(ev.getExtension(name)));
        }
        return out;
    }

    private static CloudEvent sdk(java.util.function.Supplier<CloudEvent> read) {
        try {
            CloudEvent ev = read.get();
            if (ev.getSpecVersion() != SpecVersion.V1) checkSpecVersion(ev.getSpecVersion().toString());
            return ev;
        } catch (BadRequestException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new BadRequestException("not a CloudEvent: " + Json.firstLine(String.valueOf(e.getMessage())));
        }
    }

    static Event structured(JsonNode doc) {
        if (doc == null || !doc.isObject()) throw new BadRequestException("structured CloudEvent must be a JSON object");
        if (doc.hasNonNull("specversion")) checkSpecVersion(doc.get("specversion").asText());
        for (String name : List.of("specversion", "id", "source", "type")) {
            if (!doc.hasNonNull(name) || doc.get(name).asText().isEmpty()) {
                throw new BadRequestException("not a CloudEvent: missing " + name);
            }
        }
        JsonNode b64 = doc.get("data_base64");
        if (b64 != null && !(b64.isTextual() && BASE64.matcher(b64.asText()).matches())) {
            throw new BadRequestException("data_base64 is not base64");
        }
        JsonNode time = doc.get("time");
        if (time != null && !time.isNull()) {
            if (!time.isTextual()) throw new BadRequestException("CloudEvent time is not an RFC 3339 timestamp");
            checkTime(time.asText());
        }
        byte[] raw = Json.bytes(doc);
        CloudEvent ev = sdk(() -> FORMAT.deserialize(raw));
        String ct = ev.getDataContentType();
        Object data = null;
        if (b64 != null) {
            data = typedData(Base64.getDecoder().decode(b64.asText()), ct);
        } else if (doc.has("data") && !doc.get("data").isNull()) {
            JsonNode node = doc.get("data");
            data = (ct == null || isJson(ct) || !node.isTextual()) ? node : node.asText();
        }
        return new Event(ev, data, time == null || time.isNull() ? null : time.asText(), extensions(ev));
    }

    private static JsonNode parse(byte[] body, String what) {
        try {
            return Json.MAPPER.readTree(body);
        } catch (Exception e) {
            throw new BadRequestException(what + " is not JSON: " + Json.firstLine(e.getMessage()));
        }
    }

    /** The events in a request, or a BadRequestException saying why it is not CloudEvents 1.0. */
    static Received decode(Map<String, String> headers, byte[] body) {
        String media = mediaType(headers.get("content-type"));
        if (media.equals(BATCH)) {
            JsonNode items = parse(body, "CloudEvents batch");
            if (items == null || !items.isArray()) throw new BadRequestException("a CloudEvents batch is a JSON array of objects");
            List<Event> out = new ArrayList<>();
            for (JsonNode item : items) {
                if (!item.isObject()) throw new BadRequestException("a CloudEvents batch is a JSON array of objects");
                out.add(structured(item));
            }
            return new Received(out, "batch");
        }
        if (media.equals(STRUCTURED)) {
            return new Received(List.of(structured(parse(body, "structured CloudEvent"))), "structured");
        }
        Map<String, String> decoded = new LinkedHashMap<>();
        headers.forEach((k, v) -> decoded.put(k, k.startsWith("ce-") ? percentDecode(v) : v));
        if (decoded.keySet().stream().noneMatch(k -> k.startsWith("ce-"))) {
            throw new BadRequestException("not a CloudEvent: no ce- headers, not " + STRUCTURED);
        }
        List<String> missing = new ArrayList<>();
        for (String a : List.of("id", "source", "type", "specversion")) {
            String v = decoded.get("ce-" + a);
            if (v == null || v.isEmpty()) missing.add("ce-" + a);
        }
        if (!missing.isEmpty()) throw new BadRequestException("not a CloudEvent: missing " + String.join(", ", missing));
        checkSpecVersion(decoded.get("ce-specversion"));
        checkTime(decoded.get("ce-time"));
        CloudEvent ev = sdk(() -> HttpMessageFactory.createReader(decoded, body).toEvent());
        Object data = typedData(body, headers.get("content-type"));
        return new Received(List.of(new Event(ev, data, decoded.get("ce-time"), extensions(ev))), "binary");
    }

    /** A handler's reply as the SDK's event: a Reply, an Event (echoed) or the SDK's own CloudEvent. */
    static CloudEvent toSdk(Object reply) {
        if (reply instanceof CloudEvent ce) return ce;
        if (!(reply instanceof Reply r)) {
            throw new IllegalStateException("a cloudevent function returns a Reply, an io.cloudevents.CloudEvent or null, not "
                    + reply.getClass().getName());
        }
        CloudEventBuilder b = CloudEventBuilder.v1().withId(r.id).withType(r.type).withSource(URI.create(r.source));
        if (r.subject != null) b.withSubject(r.subject);
        if (r.time != null) b.withTime(OffsetDateTime.parse(r.time));
        if (r.dataSchema != null) b.withDataSchema(URI.create(r.dataSchema));
        r.extensions.forEach(b::withExtension);
        if (r.data != null) {
            String ct = r.dataContentType;
            byte[] bytes;
            if (r.data instanceof byte[] raw) {
                bytes = raw;
                if (ct == null || isJson(ct)) ct = "application/octet-stream";
            } else if (r.data instanceof String s && ct != null && !isJson(ct)) {
                bytes = s.getBytes(StandardCharsets.UTF_8);
            } else {
                bytes = Json.bytes(r.data);
            }
            if (ct != null) b.withDataContentType(ct);
            b.withData(bytes);
        }
        return b.build();
    }

    static boolean wantsStructured(Object reply) {
        return reply instanceof Reply r && r.structured;
    }

    /** Binary or structured reply: headers (lower-case) and body. */
    static Map.Entry<Map<String, String>, byte[]> encode(Object reply) {
        CloudEvent ev = toSdk(reply);
        Map<String, String> headers = new LinkedHashMap<>();
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        var writer = HttpMessageFactory.createWriter(headers::put, bytes -> body.writeBytes(bytes == null ? new byte[0] : bytes));
        if (wantsStructured(reply)) {
            writer.writeStructured(ev, FORMAT);
        } else {
            writer.writeBinary(ev);
        }
        Map<String, String> out = new LinkedHashMap<>();
        headers.forEach((k, v) -> {
            String key = k.toLowerCase();
            out.put(key, key.startsWith("ce-") ? percentEncode(v) : v);
        });
        if (!wantsStructured(reply) && ev.getData() == null) out.remove("content-type");
        return Map.entry(out, body.toByteArray());
    }

    static byte[] encodeBatch(List<Object> replies) {
        ArrayNode items = Json.MAPPER.createArrayNode();
        for (Object reply : replies) {
            try {
                items.add((ObjectNode) Json.MAPPER.readTree(FORMAT.serialize(toSdk(reply))));
            } catch (java.io.IOException e) {
                throw new IllegalStateException(e);
            }
        }
        return Json.bytes(items);
    }
}
