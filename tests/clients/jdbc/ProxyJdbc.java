// pgjdbc through the Borealis proxy: TLS verify-full, server-side prepared statements (prepareThreshold=1,
// so every statement is a named one) from many connections over a small pool, and explicit transactions.
// Usage: java -cp postgresql.jar:. ProxyJdbc HOST PORT USER PASSWORD CA_FILE ; prints "ok" on success.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

public class ProxyJdbc {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/postgres";
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("ssl", "true");
        props.setProperty("sslmode", "verify-full");
        props.setProperty("sslrootcert", args[4]);
        props.setProperty("prepareThreshold", "1");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");

        try (Connection c = DriverManager.getConnection(url, props); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE IF NOT EXISTS jdbc_items (worker int, n int)");
            s.execute("TRUNCATE jdbc_items");
        }

        ExecutorService pool = Executors.newFixedThreadPool(16);
        List<Future<Integer>> results = new ArrayList<>();
        for (int w = 0; w < 16; w++) {
            final int worker = w;
            results.add(pool.submit(() -> {
                int sum = 0;
                try (Connection c = DriverManager.getConnection(url, props)) {
                    // The same statement text on every connection: pgjdbc names it S_1, S_2... on each, and
                    // the proxy must keep them apart on the shared server connections.
                    try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1")) {
                        for (int i = 0; i < 40; i++) {
                            ps.setInt(1, i);
                            try (ResultSet rs = ps.executeQuery()) {
                                rs.next();
                                if (rs.getInt(1) != i + 1) throw new IllegalStateException("wrong answer");
                                sum += rs.getInt(1);
                            }
                        }
                    }
                    c.setAutoCommit(false);
                    try (PreparedStatement ins = c.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?)")) {
                        for (int i = 0; i < 5; i++) {
                            ins.setInt(1, worker);
                            ins.setInt(2, i);
                            ins.executeUpdate();
                        }
                    }
                    c.commit();
                    try (PreparedStatement ins = c.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?)")) {
                        ins.setInt(1, worker);
                        ins.setInt(2, 999);
                        ins.executeUpdate();
                    }
                    c.rollback();
                }
                return sum;
            }));
        }
        int expected = 0;
        for (int i = 0; i < 40; i++) expected += i + 1;
        for (Future<Integer> f : results) {
            if (f.get(120, TimeUnit.SECONDS) != expected) throw new IllegalStateException("wrong sum");
        }
        pool.shutdown();

        try (Connection c = DriverManager.getConnection(url, props); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT count(*), count(*) FILTER (WHERE n = 999) FROM jdbc_items")) {
            rs.next();
            if (rs.getInt(1) != 80 || rs.getInt(2) != 0) {
                throw new IllegalStateException("rows: " + rs.getInt(1) + ", rolled back rows: " + rs.getInt(2));
            }
        }
        System.out.println("ok");
    }
}
