package ledgerstream.connect;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.json.JsonConverterConfig;
import org.apache.kafka.connect.runtime.Herder;
import org.apache.kafka.connect.runtime.TargetState;
import org.apache.kafka.connect.runtime.Worker;
import org.apache.kafka.connect.runtime.WorkerConfig;
import org.apache.kafka.connect.runtime.isolation.Plugins;
import org.apache.kafka.connect.runtime.rest.entities.ConnectorInfo;
import org.apache.kafka.connect.runtime.standalone.StandaloneConfig;
import org.apache.kafka.connect.runtime.standalone.StandaloneHerder;
import org.apache.kafka.connect.storage.Converter;
import org.apache.kafka.connect.storage.FileOffsetBackingStore;
import org.apache.kafka.connect.util.FutureCallback;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Kafka Connect standalone worker without the REST server, for the native ledgerstream stack.
 *
 * <p>The stock ConnectStandalone always builds the REST server, which needs Jetty 12 classes the Debezium bundle
 * does not ship. Nothing in the native stack talks to that API: connectors come from properties files given on
 * the command line, offsets live in a local file, and liveness is observed through the heartbeat topic and the
 * replication slot. So this class wires the same runtime pieces ConnectStandalone wires, minus the REST server.
 *
 * <p>Usage: {@code Launcher worker.properties connector.properties...} runs the worker until SIGTERM/SIGINT;
 * {@code Launcher --render file.properties} prints the file, substituted, as a sorted JSON object (used to check
 * that the Python renderer used by docker-compose reads the file exactly like this class does).
 *
 * <p>Every value may contain {@code ${NAME}} placeholders, replaced from the environment. A missing variable is a
 * start-up error, never an empty string.
 */
public final class Launcher {
    private static final Logger LOG = LoggerFactory.getLogger(Launcher.class);
    private static final Pattern PLACEHOLDER = Pattern.compile("\\$\\{([A-Za-z_][A-Za-z0-9_]*)\\}");
    /** Shows up as the worker id in Connect's logs and metrics; there is no REST URL to derive it from. */
    private static final String WORKER_ID = "ledgerstream-native";
    private static final long CONNECTOR_CREATE_TIMEOUT_S = 120;

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        if (args.length == 2 && args[0].equals("--render")) {
            ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
            System.out.println(mapper.writeValueAsString(new TreeMap<>(load(Path.of(args[1])))));
            return;
        }
        if (args.length < 2) {
            System.err.println("usage: Launcher worker.properties connector.properties... | --render file.properties");
            System.exit(2);
        }
        try {
            run(args);
        } catch (Exception e) {
            LOG.error("Kafka Connect launcher failed", e);
            System.exit(3);
        }
    }

    private static void run(String[] args) throws Exception {
        Map<String, String> workerProps = load(Path.of(args[0]));

        LOG.info("Scanning for plugin classes");
        Plugins plugins = new Plugins(workerProps);
        plugins.compareAndSwapWithDelegatingLoader();
        StandaloneConfig config = new StandaloneConfig(workerProps);
        String clusterId = config.kafkaClusterId();

        ConnectorClientConfigOverridePolicy policy = plugins.newPlugin(
                config.getString(WorkerConfig.CONNECTOR_CLIENT_POLICY_CLASS_CONFIG),
                config,
                ConnectorClientConfigOverridePolicy.class);

        // Offsets are stored as schemaless JSON, exactly as ConnectStandalone does, so that an offsets file written
        // by either stays readable by the other.
        Converter internalConverter = plugins.newInternalConverter(
                true, JsonConverter.class.getName(), Map.of(JsonConverterConfig.SCHEMAS_ENABLE_CONFIG, "false"));
        FileOffsetBackingStore offsets = new FileOffsetBackingStore(internalConverter);
        offsets.configure(config);

        Worker worker = new Worker(WORKER_ID, Time.SYSTEM, plugins, config, offsets, policy);
        StandaloneHerder herder = new StandaloneHerder(worker, clusterId, policy);

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            LOG.info("Shutdown requested: stopping connectors and flushing offsets");
            try {
                herder.stop();
            } finally {
                stopped.countDown();
            }
        }, "ledgerstream-connect-shutdown"));

        herder.start();
        for (int i = 1; i < args.length; i++) {
            Map<String, String> connector = load(Path.of(args[i]));
            String name = connector.get("name");
            if (name == null || name.isBlank()) {
                throw new IllegalArgumentException(args[i] + ": missing `name`");
            }
            FutureCallback<Herder.Created<ConnectorInfo>> created = new FutureCallback<>();
            // allowReplace: the standalone herder keeps configs in memory only, but a restart with an edited file
            // must still win over anything registered earlier in this process.
            herder.putConnectorConfig(name, connector, TargetState.STARTED, true, created);
            created.get(CONNECTOR_CREATE_TIMEOUT_S, TimeUnit.SECONDS);
            LOG.info("Connector {} registered from {}", name, args[i]);
        }
        herder.ready();
        LOG.info("Kafka Connect standalone worker running");
        stopped.await();
    }

    /** Loads a properties file with java.util.Properties semantics, then substitutes placeholders in the values. */
    static Map<String, String> load(Path path) throws IOException {
        Properties props = new Properties();
        try (Reader reader = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
            props.load(reader);
        }
        Map<String, String> out = new TreeMap<>();
        for (String key : props.stringPropertyNames()) {
            out.put(key, substitute(path, key, props.getProperty(key)));
        }
        return out;
    }

    private static String substitute(Path path, String key, String value) {
        Matcher m = PLACEHOLDER.matcher(value);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            String name = m.group(1);
            String env = System.getenv(name);
            if (env == null) {
                throw new IllegalArgumentException(
                        path + ": " + key + " needs environment variable " + name + ", which is not set");
            }
            m.appendReplacement(sb, Matcher.quoteReplacement(env));
        }
        m.appendTail(sb);
        return sb.toString();
    }
}
